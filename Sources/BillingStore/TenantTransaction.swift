import BillingCore
import Foundation
import Logging
import PostgresNIO

/// One tenant-scoped transaction: a short unit of work on one tenant's rows (a call to Stripe happens between two of
/// them, never inside one). Its methods are the only SQL it runs.
public struct TenantTransaction: Sendable {
    let connection: PostgresConnection
    public let tenant: UUID
    let logger: Logger
}

extension BillingDatabase {
    /// `body` in one transaction scoped to `tenant`, through `TenantTransaction`'s methods. With `readOnly`, every
    /// statement reads the same snapshot and none may write.
    public func transaction<T: Sendable>(
        _ tenant: UUID, operation: String, readOnly: Bool = false, _ body: @Sendable (TenantTransaction) async throws -> T
    ) async throws -> T {
        try await withTenant(tenant, operation: operation, readOnly: readOnly) { connection in
            try await body(TenantTransaction(connection: connection, tenant: tenant, logger: logger))
        }
    }
}
