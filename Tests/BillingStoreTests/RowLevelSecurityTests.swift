import BillingStore
import BillingDevSupport
import Foundation
import Logging
import PostgresNIO
import Testing

/// Isolation probes against a real PostgreSQL, connected as the server's own role (billing_app: NOBYPASSRLS, owns nothing).
@Suite struct RowLevelSecurityTests {
    let logger = Logger(label: "test")
    let tenantA = UUID()
    let tenantB = UUID()

    /// Two tenants, each with a subscription, a ledger entry and an audit event, written through tenant-scoped transactions.
    func seeded() async throws -> TestDatabase {
        let database = try await TestCluster.shared.freshDatabase()
        try await database.withAppClient { db in
            let store = TenantStore(database: db)
            for (tenant, name) in [(tenantA, "A"), (tenantB, "B")] {
                _ = try await store.provision(id: tenant, name: name, email: "\(name)@example.com", actor: AuditActor(kind: .system, id: "test"))
                try await db.withTenant(tenant, operation: "seed") { connection in
                    try await connection.query("""
                        INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, plan, billing_interval, seats, status)
                        VALUES (\(tenant), \("sub_" + name), 'team', 'month', 3, 'active')
                        """, logger: logger)
                    try await connection.query("""
                        INSERT INTO billing.credit_ledger (tenant_id, source, kind, amount, balance_after)
                        VALUES (\(tenant), \("grant:" + name), 'grant', 10, 10)
                        """, logger: logger)
                    try await connection.query("""
                        UPDATE billing.tenants SET stripe_customer_id = \("cus_" + name) WHERE id = \(tenant)
                        """, logger: logger)
                }
            }
        }
        return database
    }

    static let tenantTables = ["subscriptions", "credit_ledger", "credit_balances", "audit_events"]

    func count(_ connection: PostgresConnection, _ table: String) async throws -> Int {
        try await connection.first("SELECT count(*)::int FROM billing.\(unescaped: table)", as: Int.self, logger: logger) ?? -1
    }

    @Test func withoutATenantEveryTenantTableIsEmpty() async throws {
        let database = try await seeded()
        try await database.withAppClient { db in
            try await db.client.withConnection { connection in
                for table in Self.tenantTables + ["tenants"] {
                    let rows = try await count(connection, table)
                    #expect(rows == 0, "\(table)")
                }
            }
        }
    }

    @Test func scopedToATenantOnlyItsRowsAreVisible() async throws {
        let database = try await seeded()
        try await database.withAppClient { db in
            try await db.withTenant(tenantA, operation: "probe") { connection in
                for table in Self.tenantTables {
                    let foreign = try await connection.first(
                        "SELECT count(*)::int FROM billing.\(unescaped: table) WHERE tenant_id <> \(tenantA)", as: Int.self, logger: logger)
                    #expect(foreign == 0, "\(table)")
                    #expect(try await count(connection, table) >= 1, "\(table)")
                }
                #expect(try await count(connection, "tenants") == 1)
                let names = try await connection.first("SELECT string_agg(name, ',') FROM billing.tenants", as: String.self, logger: logger)
                #expect(names == "A")
            }
        }
    }

    @Test func writingAnotherTenantsRowsIsRefused() async throws {
        let database = try await seeded()
        try await database.withAppClient { db in
            // Inserting a row for B while scoped to A violates the policy's WITH CHECK.
            await #expect(throws: StoreError.self) {
                try await db.withTenant(tenantA, operation: "probe") { connection in
                    try await connection.query("""
                        INSERT INTO billing.credit_ledger (tenant_id, source, kind, amount, balance_after)
                        VALUES (\(tenantB), 'forged', 'grant', 1000000, 1000000)
                        """, logger: logger)
                }
            }
            // Moving A's row to B is refused too.
            do {
                try await db.withTenant(tenantA, operation: "probe") { connection in
                    try await connection.query(
                        "UPDATE billing.subscriptions SET tenant_id = \(tenantB) WHERE tenant_id = \(tenantA)", logger: logger)
                }
                Issue.record("moving a row to another tenant was accepted")
            } catch {
                #expect((error as? StoreError)?.sqlState == "42501", "\(error)")
            }
            // B's rows cannot even be addressed from A's scope: the update touches nothing.
            let touched = try await db.withTenant(tenantA, operation: "probe") { connection in
                try await connection.first(
                    "WITH u AS (UPDATE billing.subscriptions SET seats = 40 WHERE tenant_id = \(tenantB) RETURNING 1) SELECT count(*)::int FROM u",
                    as: Int.self, logger: logger)
            }
            #expect(touched == 0)
            let seats = try await db.withTenant(tenantB, operation: "probe") { connection in
                try await connection.first("SELECT seats FROM billing.subscriptions", as: Int.self, logger: logger)
            }
            #expect(seats == 3)
        }
    }

    @Test func thePooledConnectionForgetsTheTenantWhenTheTransactionEnds() async throws {
        let database = try await seeded()
        // One connection, so the second lease is the same connection the first transaction used.
        try await database.withAppClient(maxConnections: 1) { db in
            let inside = try await db.withTenant(tenantA, operation: "probe") { connection in
                try await count(connection, "subscriptions")
            }
            #expect(inside == 1)
            try await db.client.withConnection { connection in
                #expect(try await count(connection, "subscriptions") == 0)
                let setting = try await connection.first(
                    "SELECT coalesce(current_setting('app.tenant_id', true), '')", as: String.self, logger: logger)
                #expect(setting == "")
            }
        }
    }

    @Test func theServersRoleHasNoWayAround() async throws {
        let database = try await seeded()
        try await database.withAppClient { db in
            try await db.client.withConnection { connection in
                let attributes = try await connection.first(
                    "SELECT rolbypassrls OR rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
                    as: Bool.self, logger: logger)
                #expect(attributes == false)
                let owned = try await connection.first(
                    """
                    SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'billing' AND pg_get_userbyid(c.relowner) = current_user
                    """, as: Int.self, logger: logger)
                #expect(owned == 0)
            }
            // Platform tables: no DELETE or TRUNCATE for the server.
            for statement in ["DELETE FROM billing.tenants", "TRUNCATE billing.credit_ledger", "DELETE FROM billing.credit_ledger",
                              "UPDATE billing.credit_ledger SET amount = 0", "DELETE FROM billing.schema_migrations"] {
                do {
                    try await db.withTenant(tenantA, operation: "probe") { connection in
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    Issue.record("\(statement) was allowed")
                } catch {
                    #expect((error as? StoreError)?.sqlState == "42501", "\(statement): \(error)")
                }
            }
        }
    }

    @Test func crossTenantLookupsReturnIdsOnly() async throws {
        let database = try await seeded()
        try await database.withAppClient { db in
            try await db.client.withConnection { connection in
                let byCustomer = try await connection.first(
                    "SELECT billing.tenant_for_stripe_customer('cus_B')", as: UUID.self, logger: logger)
                #expect(byCustomer == tenantB)
                let bySubscription = try await connection.first(
                    "SELECT billing.tenant_for_stripe_subscription('sub_A')", as: UUID.self, logger: logger)
                #expect(bySubscription == tenantA)
                let unknown = try await connection.first(
                    "SELECT billing.tenant_for_stripe_customer('cus_nobody')", as: UUID?.self, logger: logger)
                #expect(unknown == .some(nil))
            }
            // An id two tenants' rows share resolves to nobody, never to an arbitrary one of them.
            for tenant in [tenantA, tenantB] {
                try await db.withTenant(tenant, operation: "seed") { connection in
                    try await connection.query("""
                        INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, plan, billing_interval, seats, status, is_current)
                        VALUES (\(tenant), 'sub_shared', 'pro', 'month', 1, 'canceled', false)
                        """, logger: logger)
                }
            }
            let shared = try await db.client.withConnection { connection in
                try await connection.first(
                    "SELECT billing.tenant_for_stripe_subscription('sub_shared')", as: UUID?.self, logger: logger)
            }
            #expect(shared == .some(nil))
        }
    }

    @Test func statusReadIsScopedToTheTenantItNames() async throws {
        let database = try await seeded()
        try await database.withAppClient { db in
            let store = TenantStore(database: db)
            let status = try await store.status(of: tenantA)
            #expect(status?.plan == "team")
            #expect(status?.seats == 3)
            #expect(try await store.status(of: UUID()) == nil)
        }
    }
}

/// `tenant_id` leads every key of every tenant table, so the schema can be distributed by tenant (Citus);
/// and every tenant table is fenced. Read from the catalog, so a new table that breaks the rule fails here.
@Suite struct SchemaRulesTests {
    let logger = Logger(label: "test")

    @Test func tenantTablesAreFencedAndKeyedByTenant() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        try await database.withOwnerClient { client in
            let tables = try await client.query("""
                SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                       EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation')
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnotnull
                WHERE n.nspname = 'billing' AND c.relkind = 'r'
                ORDER BY 1
                """, logger: logger)
            var names: [String] = []
            for try await (name, enabled, forced, policy) in tables.decode((String, Bool, Bool, Bool).self) {
                names.append(name)
                #expect(enabled && forced && policy, "\(name) must ENABLE and FORCE RLS with a tenant_isolation policy")
            }
            #expect(names.count >= 4)
            #expect(names.contains("subscriptions") && names.contains("credit_ledger"))

            // Primary keys, unique constraints and foreign keys: tenant_id is the first column.
            let constraints = try await client.query("""
                SELECT c.relname, k.conname, k.contype::text, a.attname
                FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
                WHERE n.nspname = 'billing' AND k.contype IN ('p', 'u', 'f')
                  AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND t.attnotnull)
                """, logger: logger)
            var checked = 0
            for try await (table, constraint, _, first) in constraints.decode((String, String, String, String).self) {
                checked += 1
                #expect(first == "tenant_id", "\(table).\(constraint) must start with tenant_id")
            }
            #expect(checked >= 8)

            // Unique indexes too (a unique index is a unique constraint by another name).
            let indexes = try await client.query("""
                SELECT i.relname, a.attname
                FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
                WHERE n.nspname = 'billing' AND x.indisunique
                  AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND t.attnotnull)
                """, logger: logger)
            for try await (index, first) in indexes.decode((String, String).self) {
                #expect(first == "tenant_id", "unique index \(index) must start with tenant_id")
            }
        }
    }
}

@Suite struct MigratorTests {
    let logger = Logger(label: "test")

    @Test func rerunningAppliesNothingAndAnEditedFileIsRefused() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        var migrations = try Migration.load(directory: TestPaths.repositoryRoot.appendingPathComponent("migrations"))
        let again = try await TestCluster.shared.migrate(migrations, on: database)
        #expect(again.isEmpty)

        migrations[0].sql += "\n-- edited after it was applied\n"
        do {
            try await TestCluster.shared.migrate(migrations, on: database)
            Issue.record("an edited migration was accepted")
        } catch {
            #expect("\(error)".contains("was edited after it was applied"))
        }
    }

    /// A migration that fills a new column from existing rows reaches every tenant's rows, although it runs as a
    /// role that row-level security applies to.
    @Test func aBackfillReachesEveryTenantsRows() async throws {
        let database = try await TestCluster.shared.freshDatabase(upTo: "0010")
        let tenant = UUID()
        try await database.withOwnerClient { client in
            try await client.query("INSERT INTO billing.tenants (id, name, email) VALUES (\(tenant), 'Before', 'b@example.com')", logger: logger)
            try await client.query("""
                INSERT INTO billing.payments (tenant_id, payment_id, amount, amount_refunded, currency, purpose, created_at)
                VALUES (\(tenant), 'pi_before', 1000, 300, 'usd', 'credit_topup', now())
                """, logger: logger)
        }
        let applied = try await TestCluster.shared.migrate(
            try Migration.load(directory: TestPaths.repositoryRoot.appendingPathComponent("migrations")), on: database)
        #expect(applied.contains("0011"))
        try await database.withOwnerClient { client in
            let rows = try await client.query(
                "SELECT charge_amount_refunded::int FROM billing.payments WHERE payment_id = 'pi_before'", logger: logger)
            for try await value in rows.decode(Int.self) { #expect(value == 300) }
        }
    }

    @Test func aFailingMigrationLeavesNothingBehind() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        var migrations = try Migration.load(directory: TestPaths.repositoryRoot.appendingPathComponent("migrations"))
        migrations.append(Migration(
            version: "9999", fileName: "9999_broken.sql",
            sql: "CREATE TABLE half_done (id int);\nSELECT no_such_function();"))
        await #expect(throws: StoreError.self) {
            try await TestCluster.shared.migrate(migrations, on: database)
        }
        try await database.withOwnerClient { client in
            let table = try await client.query("SELECT to_regclass('billing.half_done')::text", logger: logger)
            for try await name in table.decode(String?.self) { #expect(name == nil) }
            let recorded = try await client.query("SELECT count(*)::int FROM billing.schema_migrations WHERE version = '9999'", logger: logger)
            for try await count in recorded.decode(Int.self) { #expect(count == 0) }
        }
    }

    @Test func theServersPasswordComesFromItsURL() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        var wrong = database.appURL
        wrong.password = "not-the-password"
        let configuration = PostgresConnection.Configuration(
            host: wrong.host, port: wrong.port, username: wrong.username, password: wrong.password,
            database: wrong.database, tls: .disable)
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            try await connection.close()
            Issue.record("a wrong password was accepted")
        } catch let error as PSQLError {
            #expect(error.serverInfo?[.sqlState] == "28P01")
        }
        // The right one, from the URL the migrator was given, is accepted.
        var right = configuration
        right.password = TestCluster.appPassword
        let connection = try await PostgresConnection.connect(configuration: right, id: 2, logger: logger)
        try await connection.close()
    }
}
