import BillingStore
import Foundation
import Logging
import PostgresNIO

/// A real PostgreSQL for the tests: the one `make test` started (`BILLING_TEST_DATABASE_URL`, a superuser URL), or a
/// throwaway cluster this process starts in /tmp and stops at exit. Anything but a local server is refused.
public actor TestCluster {
    public static let shared = TestCluster()

    private var superuser: DatabaseURL?
    public static let appPassword = "app-password-for-tests"

    public func superuserURL() throws -> DatabaseURL {
        if let superuser { return superuser }
        let url: DatabaseURL
        if let given = ProcessInfo.processInfo.environment["BILLING_TEST_DATABASE_URL"], !given.isEmpty {
            url = try DatabaseURL(given)
        } else {
            let directory = URL(fileURLWithPath: "/tmp/billing-test-\(getpid())")
            let cluster = LocalCluster(directory: directory, port: try freeLocalPort(), password: "test-superuser")
            try cluster.start(durable: false)
            startedCluster = cluster
            atexit {
                startedCluster?.stop()
                if let directory = startedCluster?.directory { try? FileManager.default.removeItem(at: directory) }
            }
            url = cluster.superuserURL
        }
        guard url.isLocal else {
            throw StoreError.configuration("tests refuse to run against a non-local database: \(url)")
        }
        superuser = url
        return url
    }

    /// A new database with every migration applied, owned as in production: the superuser migrates, and the
    /// server's role `billing_app` (NOBYPASSRLS, owns nothing) is what tests connect as.
    /// Serialized: roles are cluster-wide and two migrations creating them at once would race.
    /// With `upTo`, only the migrations up to that version (to test a later one against rows written before it).
    public func freshDatabase(upTo lastVersion: String? = nil, logger: Logger = Logger(label: "test")) async throws -> TestDatabase {
        let superuser = try superuserURL()
        let name = "billing_test_\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        var appURL = superuser.with(database: name)
        appURL.username = "billing_app"
        appURL.password = Self.appPassword
        let app = appURL
        let owner = superuser.with(database: name)
        let migrations = try Migration.load(directory: TestPaths.repositoryRoot.appendingPathComponent("migrations"))
            .filter { lastVersion == nil || $0.version <= lastVersion! }
        try await serialized {
            try await superuser.createDatabase(name, logger: logger)
            try await Migrator(migrations: migrations, logger: logger).run(ownerURL: owner, appURL: app)
        }
        return TestDatabase(name: name, ownerURL: owner, appURL: app)
    }

    /// Runs a migration in turn with every other one of this process.
    @discardableResult
    public func migrate(_ migrations: [Migration], on database: TestDatabase) async throws -> [String] {
        try await serialized {
            try await Migrator(migrations: migrations, logger: Logger(label: "test")).run(ownerURL: database.ownerURL, appURL: database.appURL)
        }
    }

    /// A cluster of its own, migrated, for a test that stops and starts PostgreSQL; the caller stops it.
    public static func standalone(logger: Logger = Logger(label: "test")) async throws -> (LocalCluster, TestDatabase) {
        let directory = URL(fileURLWithPath: "/tmp/billing-own-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))")
        let cluster = LocalCluster(directory: directory, port: try freeLocalPort(), password: "own-superuser")
        try cluster.start(durable: false)
        let superuser = cluster.superuserURL
        try await superuser.createDatabase("billing", logger: logger)
        var app = superuser.with(database: "billing")
        app.username = "billing_app"
        app.password = appPassword
        let owner = superuser.with(database: "billing")
        let migrations = try Migration.load(directory: TestPaths.repositoryRoot.appendingPathComponent("migrations"))
        try await Migrator(migrations: migrations, logger: logger).run(ownerURL: owner, appURL: app)
        return (cluster, TestDatabase(name: "billing", ownerURL: owner, appURL: app))
    }

    private var tail: Task<Void, Never>?

    /// One at a time, in call order (an actor alone would interleave at every await).
    private func serialized<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let previous = tail
        let task = Task {
            await previous?.value
            return try await operation()
        }
        tail = Task { _ = await task.result }
        return try await task.value
    }
}

nonisolated(unsafe) private var startedCluster: LocalCluster?

public struct TestDatabase: Sendable {
    public var name: String
    /// The superuser on this database (for set-up that the server's role may not do).
    public var ownerURL: DatabaseURL
    /// The server's own login role.
    public var appURL: DatabaseURL

    /// A running client as the server's role, for the length of `body`.
    public func withAppClient<T: Sendable>(
        maxConnections: Int = 4, _ body: @Sendable (BillingDatabase) async throws -> T
    ) async throws -> T {
        let database = BillingDatabase(url: appURL, maxConnections: maxConnections, logger: Logger(label: "test.db"))
        return try await database.whileRunning { try await body(database) }
    }

    /// One connection as the superuser on this database.
    public func withOwnerClient<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await ownerURL.withConnection(logger: Logger(label: "test.owner"), body)
    }
}

public enum TestPaths {
    /// The checkout's root, found from this file's path.
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
