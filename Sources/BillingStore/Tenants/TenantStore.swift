import BillingCore
import Foundation
import Logging
import PostgresNIO

public struct TenantRecord: Sendable, Equatable, Codable {
    public var id: UUID
    public var name: String
    public var email: String
    public var stripeCustomerID: String?
    public var createdAt: Date
}

/// A tenant's billing state as one row: its current subscription (if any) and its credit balance.
public struct TenantStatusRow: Sendable, Equatable {
    public var plan: String?
    public var interval: String?
    public var status: String?
    public var seats: Int?
    public var currentPeriodEnd: Date?
    public var cancelAtPeriodEnd: Bool
    public var pastDueSince: Date?
    public var pendingPlan: String?
    public var pendingInterval: String?
    public var creditsAvailable: Int
    public var creditsFrozen: Int
    public var cancelAt: Date? = nil
    public var pendingEffectiveAt: Date? = nil
    /// `request` or `schedule`.
    public var pendingSource: String? = nil
    public var scheduleID: String? = nil
    public var pendingUpdateExpiresAt: Date? = nil
    public var tenantName: String = ""
}

/// Who made a change, for the audit trail.
public struct AuditActor: Sendable, Equatable {
    public enum Kind: String, Sendable { case user, service, `operator`, stripe, system }
    public var kind: Kind
    public var id: String

    public init(kind: Kind, id: String) {
        self.kind = kind
        self.id = id
    }
}

public struct TenantStore: Sendable {
    public let database: BillingDatabase

    public init(database: BillingDatabase) {
        self.database = database
    }

    public enum ProvisionOutcome: Sendable, Equatable {
        case created(TenantRecord)
        /// The same tenant was provisioned before with the same name and email: a harmless repeat.
        case existing(TenantRecord)
    }

    /// Creates the tenant and its empty wallet. Repeating the call with the same id, name and email returns the
    /// tenant; the same id with other details, or a deleted tenant's id, is a conflict.
    public func provision(id: UUID, name: String, email: String, actor: AuditActor) async throws -> ProvisionOutcome {
        let logger = database.logger
        return try await database.withTenant(id, operation: "provision tenant") { connection in
            let inserted = try await connection.first(
                """
                INSERT INTO billing.tenants (id, name, email) VALUES (\(id), \(name), \(email))
                ON CONFLICT (id) DO NOTHING RETURNING created_at
                """, as: Date.self, logger: logger)
            if let createdAt = inserted {
                try await connection.query(
                    "INSERT INTO billing.credit_balances (tenant_id) VALUES (\(id))", logger: logger)
                let record = TenantRecord(id: id, name: name, email: email, stripeCustomerID: nil, createdAt: createdAt)
                try await AuditLog.record(
                    connection, tenant: id, actor: actor, action: "tenant.provisioned",
                    before: nil, after: ["name": name, "email": email], logger: logger)
                return .created(record)
            }
            let rows = try await connection.query(
                "SELECT name, email, stripe_customer_id, created_at, deleted_at FROM billing.tenants WHERE id = \(id)",
                logger: logger)
            for try await (existingName, existingEmail, customer, createdAt, deletedAt)
                in rows.decode((String, String, String?, Date, Date?).self)
            {
                if deletedAt != nil {
                    throw StoreError.conflict("tenant \(id) was deleted; provision a new tenant id")
                }
                guard existingName == name, existingEmail == email else {
                    throw StoreError.conflict(
                        "tenant \(id) exists with name '\(existingName)' and email '\(existingEmail)'; repeat those or use another id")
                }
                return .existing(TenantRecord(
                    id: id, name: existingName, email: existingEmail, stripeCustomerID: customer, createdAt: createdAt))
            }
            throw StoreError.conflict("tenant \(id) could not be provisioned")
        }
    }

    /// Tenants by name, email (substring, any case), id or Stripe customer id, ordered by id after `after`.
    public func search(_ query: String?, after: UUID?, limit: Int) async throws(StoreError) -> [TenantListing] {
        do {
            var found: [TenantListing] = []
            let rows = try await database.client.query(
                "SELECT * FROM billing.search_tenants(\(query), \(after), \(limit)::int)", logger: database.logger)
            for try await (id, name, email, customer, created, deleted) in rows.decode((UUID, String, String, String?, Date, Date?).self) {
                found.append(TenantListing(id: id, name: name, email: email, stripeCustomerID: customer, createdAt: created, deletedAt: deleted))
            }
            return found
        } catch {
            throw StoreError.wrap(error, operation: "search tenants")
        }
    }

    /// The tenant's status in one database round trip, as a prepared statement (parsed once per connection);
    /// the SQL function scopes itself to the tenant. Nil if the tenant does not exist or was deleted.
    public func status(of tenant: UUID) async throws(StoreError) -> TenantStatusRow? {
        do {
            for try await row in try await database.client.execute(
                TenantStatusStatement(tenant: tenant.uuidString.lowercased()), logger: database.logger)
            {
                return row
            }
            return nil
        } catch {
            throw StoreError.wrap(error, operation: "read status")
        }
    }
}

struct TenantStatusStatement: PostgresPreparedStatement {
    static let sql = "SELECT * FROM billing.tenant_status($1)"
    typealias Row = TenantStatusRow

    var tenant: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(tenant)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> TenantStatusRow {
        let (plan, interval, status, seats, periodEnd, cancelAtPeriodEnd, pastDueSince, pendingPlan, pendingInterval, available, frozen,
             cancelAt, pendingEffectiveAt, pendingSource, scheduleID, pendingUpdateExpiresAt, tenantName) =
            try row.decode((String?, String?, String?, Int?, Date?, Bool?, Date?, String?, String?, Int, Int,
                            Date?, Date?, String?, String?, Date?, String).self)
        return TenantStatusRow(
            plan: plan, interval: interval, status: status, seats: seats, currentPeriodEnd: periodEnd,
            cancelAtPeriodEnd: cancelAtPeriodEnd ?? false, pastDueSince: pastDueSince, pendingPlan: pendingPlan,
            pendingInterval: pendingInterval, creditsAvailable: available, creditsFrozen: frozen, cancelAt: cancelAt,
            pendingEffectiveAt: pendingEffectiveAt, pendingSource: pendingSource, scheduleID: scheduleID,
            pendingUpdateExpiresAt: pendingUpdateExpiresAt, tenantName: tenantName)
    }
}

/// The audit trail: one row per applied change, written in the change's own transaction.
public enum AuditLog {
    public static func record(
        _ connection: PostgresConnection, tenant: UUID, actor: AuditActor, action: String,
        before: [String: String]?, after: [String: String]?, logger: Logger
    ) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let beforeJSON = try before.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        let afterJSON = try after.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        try await connection.query(
            """
            INSERT INTO billing.audit_events (tenant_id, actor_type, actor, action, before, after)
            VALUES (\(tenant), \(actor.kind.rawValue), \(actor.id), \(action), \(beforeJSON)::jsonb, \(afterJSON)::jsonb)
            """, logger: logger)
    }
}

/// `billingd tenants purge`: removes every row of tenants deleted before a time, as the schema's owner (the server's
/// own role may delete nothing). Each tenant goes in one transaction scoped to it.
public enum TenantPurge {
    /// Tenant tables, children first.
    static let tables = [
        "refunds", "disputes", "payments", "stripe_invoices", "invoice_attempts", "invoice_lines", "invoice_charges", "invoices",
        "top_ups", "checkout_sessions", "credit_ledger", "credit_balances", "audit_events", "outbox_events", "subscriptions",
        "rate_buckets", "stripe_intents",
    ]

    /// What a purge did: the tenants removed, and those kept because a Stripe subscription of theirs is still live
    /// here (removing them would leave it billing with nothing left to end it; reconciliation cancels it, and a later
    /// purge removes them).
    public struct Result: Sendable {
        public var purged: [UUID] = []
        public var kept: [(tenant: UUID, subscriptions: [String])] = []
    }

    public static func run(ownerURL: DatabaseURL, deletedBefore: Date, logger: Logger) async throws -> Result {
        try await ownerURL.withConnection(logger: logger) { connection in
            var result = Result()
            var due: [UUID] = []
            for try await id in try await connection.query(
                "SELECT id FROM billing.tenants_deleted_before(\(deletedBefore))", logger: logger).decode(UUID.self)
            {
                due.append(id)
            }
            for tenant in due {
                try await connection.query("BEGIN", logger: logger)
                do {
                    try await connection.query("SET LOCAL ROLE \(unescaped: Migrator.ownerRole)", logger: logger)
                    try await connection.query(
                        "SELECT set_config('app.tenant_id', \(tenant.uuidString.lowercased()), true)", logger: logger)
                    var live: [String] = []
                    for try await id in try await connection.query("""
                        SELECT stripe_subscription_id FROM billing.subscriptions
                        WHERE tenant_id = \(tenant) AND billing_mode = 'stripe' AND status NOT IN \(unescaped: SubscriptionStatus.terminalSQL)
                        ORDER BY stripe_subscription_id
                        """, logger: logger).decode(String.self) {
                        live.append(id)
                    }
                    guard live.isEmpty else {
                        try await connection.query("ROLLBACK", logger: logger)
                        result.kept.append((tenant, live))
                        continue
                    }
                    for table in tables {
                        try await connection.query("DELETE FROM billing.\(unescaped: table) WHERE tenant_id = \(tenant)", logger: logger)
                    }
                    try await connection.query("DELETE FROM billing.stripe_events WHERE tenant_id = \(tenant)", logger: logger)
                    try await connection.query(
                        "DELETE FROM billing.tenants WHERE id = \(tenant) AND deleted_at IS NOT NULL", logger: logger)
                    try await connection.query("COMMIT", logger: logger)
                    result.purged.append(tenant)
                } catch {
                    try? await connection.query("ROLLBACK", logger: logger)
                    throw StoreError.wrap(error, operation: "purge tenant \(tenant)")
                }
            }
            return result
        }
    }
}
