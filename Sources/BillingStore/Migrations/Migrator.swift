import Foundation
import Logging
import PostgresNIO

/// One numbered file of `migrations/`.
public struct Migration: Sendable, Equatable {
    public var version: String
    public var fileName: String
    public var sql: String

    public init(version: String, fileName: String, sql: String) {
        self.version = version
        self.fileName = fileName
        self.sql = sql
    }

    /// Reads `NNNN_name.sql` files in version order.
    public static func load(directory: URL) throws(StoreError) -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw .configuration("cannot read the migrations directory \(directory.path); set BILLING_MIGRATIONS_DIR")
        }
        var migrations: [Migration] = []
        for name in names.sorted() where name.hasSuffix(".sql") {
            guard let version = name.split(separator: "_").first, version.allSatisfy(\.isNumber) else {
                throw .migration(file: name, reason: "a migration file is named NNNN_description.sql")
            }
            guard let sql = try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8) else {
                throw .migration(file: name, reason: "not readable as UTF-8")
            }
            migrations.append(Migration(version: String(version), fileName: name, sql: sql))
        }
        let versions = migrations.map(\.version)
        if Set(versions).count != versions.count {
            throw .configuration("two migration files share a version number: \(versions)")
        }
        return migrations
    }
}

/// Creates the roles and schema the server needs and applies pending migrations: each once, in order,
/// in its own transaction, under an advisory lock, recorded with a checksum.
public struct Migrator: Sendable {
    /// The NOLOGIN role that owns the schema.
    public static let ownerRole = "billing_owner"
    /// The NOLOGIN role migrations grant to; the server's login role is a member.
    public static let readWriteRole = "billing_rw"
    /// The NOLOGIN role that owns cross-tenant lookup functions and may read across tenants through them only.
    public static let resolverRole = "billing_resolver"
    public static let schema = "billing"
    static let lockKey: Int64 = 0x6269_6c6c_696e_67  // "billing"

    public var migrations: [Migration]
    public var logger: Logger

    public init(migrations: [Migration], logger: Logger) {
        self.migrations = migrations
        self.logger = logger
    }

    /// Connects as the owner (`DATABASE_OWNER_URL`), sets up roles (the app role's password from `appURL`) and migrates.
    /// Returns the versions applied by this run.
    @discardableResult
    public func run(ownerURL: DatabaseURL, appURL: DatabaseURL?) async throws -> [String] {
        if let appURL, appURL.username == ownerURL.username {
            throw StoreError.configuration("DATABASE_URL must name the server's own login role, not the owner of DATABASE_OWNER_URL")
        }
        return try await ownerURL.withConnection(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))", logger: logger)
            do {
                try await setUpRolesRetrying(connection, appURL: appURL)
                let applied = try await applyPending(connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                throw StoreError.wrap(error, operation: "migrate")
            }
        }
    }

    /// Roles are cluster-wide and the advisory lock is per database: two databases of one cluster migrating at the
    /// same moment can collide on the role catalog ("tuple concurrently updated"). That is transient; try again.
    func setUpRolesRetrying(_ connection: PostgresConnection, appURL: DatabaseURL?) async throws {
        for attempt in 1...5 {
            do {
                return try await setUpRoles(connection, appURL: appURL)
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "XX000" && attempt < 5 {
                try await Task.sleep(for: .milliseconds(50 * attempt))
            }
        }
    }

    func setUpRoles(_ connection: PostgresConnection, appURL: DatabaseURL?) async throws {
        for (role, options) in [
            (Self.ownerRole, "NOLOGIN NOINHERIT"), (Self.readWriteRole, "NOLOGIN"), (Self.resolverRole, "NOLOGIN"),
        ] {
            try await createRoleIfMissing(connection, role, options)
        }
        // The owner may hand functions to the resolver; NOINHERIT keeps the resolver's read policies off the owner.
        try await grantIfMissing(connection, Self.resolverRole, to: Self.ownerRole)
        try await grantIfMissing(connection, Self.ownerRole, to: nil)
        if let appURL {
            try await createRoleIfMissing(connection, appURL.username, "LOGIN")
            // Format with %I/%L on the server: DDL takes no bind parameters.
            let rows = try await connection.query(
                """
                SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT PASSWORD %L',
                              \(appURL.username), \(appURL.password ?? ""))
                """, logger: logger)
            for try await statement in rows.decode(String.self) {
                try await execute(connection, statement)
            }
            try await grantIfMissing(connection, Self.readWriteRole, to: appURL.username)
        }
        try await execute(connection, "CREATE SCHEMA IF NOT EXISTS \(Self.schema) AUTHORIZATION \(Self.ownerRole)")
        try await execute(connection, """
            CREATE TABLE IF NOT EXISTS \(Self.schema).schema_migrations (
                version text PRIMARY KEY,
                file_name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        try await execute(connection, "ALTER TABLE \(Self.schema).schema_migrations OWNER TO \(Self.ownerRole)")
        try await execute(connection, "GRANT USAGE ON SCHEMA \(Self.schema) TO \(Self.readWriteRole)")
        try await execute(connection, "GRANT SELECT (version) ON \(Self.schema).schema_migrations TO \(Self.readWriteRole)")
    }

    /// `GRANT role TO member` (the current user when nil), only when not granted yet: fewer catalog writes.
    func grantIfMissing(_ connection: PostgresConnection, _ role: String, to member: String?) async throws {
        let rows = try await connection.query("""
            SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
            WHERE r.rolname = \(role) AND u.rolname = coalesce(\(member), current_user)
            """, logger: logger)
        for try await _ in rows { return }
        try await execute(connection, "GRANT \(quoteIdentifier(role)) TO \(member.map(quoteIdentifier) ?? "CURRENT_USER")")
    }

    func createRoleIfMissing(_ connection: PostgresConnection, _ role: String, _ options: String) async throws {
        let exists = try await connection.query("SELECT 1 FROM pg_roles WHERE rolname = \(role)", logger: logger)
        var found = false
        for try await _ in exists { found = true }
        if !found {
            try await execute(connection, "CREATE ROLE \(quoteIdentifier(role)) \(options)")
            logger.info("created role", metadata: ["role": "\(role)"])
        }
    }

    func applyPending(_ connection: PostgresConnection) async throws -> [String] {
        var applied: [String: String] = [:]
        let rows = try await connection.query(
            "SELECT version, checksum FROM billing.schema_migrations", logger: logger)
        for try await (version, checksum) in rows.decode((String, String).self) {
            applied[version] = checksum
        }
        let known = Set(migrations.map(\.version))
        if let unknown = applied.keys.sorted().first(where: { !known.contains($0) }) {
            throw StoreError.unknownAppliedMigration(version: unknown)
        }
        var newlyApplied: [String] = []
        for migration in migrations {
            let checksum = try await sha256(connection, migration.sql)
            if let recorded = applied[migration.version] {
                guard recorded == checksum else { throw StoreError.editedMigration(file: migration.fileName) }
                continue
            }
            do {
                try await connection.withTransaction(logger: logger) { transaction in
                    try await transaction.query("SET LOCAL ROLE \(unescaped: Self.ownerRole)", logger: logger)
                    try await transaction.query("SET LOCAL search_path = \(unescaped: Self.schema), pg_catalog", logger: logger)
                    for statement in SQLScript.split(migration.sql) {
                        try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await transaction.query(
                        """
                        INSERT INTO billing.schema_migrations (version, file_name, checksum)
                        VALUES (\(migration.version), \(migration.fileName), \(checksum))
                        """, logger: logger)
                }
            } catch {
                let wrapped = StoreError.wrap(error, operation: "apply")
                throw StoreError.migration(file: migration.fileName, reason: "\(wrapped)")
            }
            logger.info("applied migration", metadata: ["file": "\(migration.fileName)"])
            newlyApplied.append(migration.version)
        }
        return newlyApplied
    }

    func sha256(_ connection: PostgresConnection, _ text: String) async throws -> String {
        let rows = try await connection.query("SELECT encode(sha256(convert_to(\(text), 'UTF8')), 'hex')", logger: logger)
        for try await digest in rows.decode(String.self) { return digest }
        throw StoreError.database(operation: "checksum", message: "no digest", sqlState: nil)
    }

    func execute(_ connection: PostgresConnection, _ sql: String) async throws {
        try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
    }

    func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
