import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// The server's connection pool (as its own login role) and the one way tenant work runs: a transaction that
/// starts by scoping itself to the tenant, so row-level security fences every statement in it.
public struct BillingDatabase: Sendable {
    public let client: PostgresClient
    public let logger: Logger

    public init(url: DatabaseURL, maxConnections: Int = 20, logger: Logger) {
        self.client = PostgresClient(configuration: url.clientConfiguration(maxConnections: maxConnections), backgroundLogger: logger)
        self.logger = logger
    }

    /// Wraps a client someone else runs.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The pool, for a `ServiceGroup` to run and shut down: `PostgresClient` is a `Service` itself.
    public var service: any Service { client }

    /// `body` while the pool runs, for a command or a test that has no `ServiceGroup`; the pool stops when `body`
    /// returns.
    public func whileRunning<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Runs `body` in one transaction scoped to `tenant`; the setting ends with the transaction, so the pooled
    /// connection carries nothing to its next lease. Database failures come back as `StoreError`; errors the body
    /// throws for its own reasons come back as they were thrown (and roll the transaction back).
    @discardableResult
    public func withTenant<T: Sendable>(
        _ tenant: UUID, operation: String, readOnly: Bool = false,
        _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        // A deadlock or serialization failure rolled everything back: the same work again, twice at most (no
        // transaction calls Stripe, so a repeat sends nothing twice).
        for _ in 1..<3 {
            do {
                return try await transactionOnce(tenant, operation: operation, readOnly: readOnly, body)
            } catch let error as StoreError where error.isConflict {
                logger.notice("transaction conflicted; running it again", metadata: ["operation": "\(operation)", "error": "\(error)"])
            }
        }
        return try await transactionOnce(tenant, operation: operation, readOnly: readOnly, body)
    }

    func transactionOnce<T: Sendable>(
        _ tenant: UUID, operation: String, readOnly: Bool, _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        do {
            return try await client.withTransaction(logger: logger) { connection in
                if readOnly {
                    // One snapshot for every statement of the read (a balance and its ledger page agree), and no
                    // writes. Read-only REPEATABLE READ never fails to serialize.
                    try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", logger: logger)
                }
                try await connection.query(
                    "SELECT set_config('app.tenant_id', \(tenant.uuidString.lowercased()), true)", logger: logger)
                return try await body(connection)
            }
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError, !(inner is PSQLError) { throw inner }
            throw StoreError.wrap(error, operation: operation)
        } catch {
            throw StoreError.wrap(error, operation: operation)
        }
    }

    /// The versions recorded in schema_migrations (the server's role may read that column only).
    public func appliedMigrations() async throws(StoreError) -> Set<String> {
        do {
            var versions = Set<String>()
            let rows = try await client.query("SELECT version FROM billing.schema_migrations", logger: logger)
            for try await version in rows.decode(String.self) { versions.insert(version) }
            return versions
        } catch {
            throw StoreError.wrap(error, operation: "read migrations")
        }
    }
}

extension PostgresConnection {
    /// The first row decoded as `T`, or nil.
    public func first<T: PostgresDecodable>(_ query: PostgresQuery, as type: T.Type, logger: Logger) async throws -> T? {
        for try await value in try await self.query(query, logger: logger).decode(T.self) { return value }
        return nil
    }
}
