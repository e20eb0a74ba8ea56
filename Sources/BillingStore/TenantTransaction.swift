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

    /// The tenant, locked until the transaction ends; nil when it does not exist or was deleted. Every change to a
    /// tenant's rows starts here, so changes to one tenant never wait on each other in a cycle. `FOR NO KEY UPDATE`:
    /// rows that refer to the tenant (whose foreign keys take `FOR KEY SHARE`) are still written meanwhile.
    public func lockTenant() async throws -> TenantRecord? {
        let rows = try await connection.query(
            "SELECT name, email, stripe_customer_id, created_at FROM billing.tenants WHERE id = \(tenant) AND deleted_at IS NULL FOR NO KEY UPDATE",
            logger: logger)
        for try await (name, email, customer, created) in rows.decode((String, String, String?, Date).self) {
            return TenantRecord(id: tenant, name: name, email: email, stripeCustomerID: customer, createdAt: created)
        }
        return nil
    }

    public func setStripeCustomer(_ customer: String) async throws {
        try await connection.query(
            "UPDATE billing.tenants SET stripe_customer_id = \(customer) WHERE id = \(tenant)", logger: logger)
    }

    /// The current subscription's plan and status when it is still live (anything but canceled or expired).
    public func liveSubscription() async throws -> (plan: String, status: String)? {
        let rows = try await connection.query("""
            SELECT plan, status FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND is_current AND status NOT IN \(unescaped: SubscriptionStatus.terminalSQL)
            """, logger: logger)
        for try await (plan, status) in rows.decode((String, String).self) { return (plan, status) }
        return nil
    }

    public struct OpenSession: Sendable, Equatable {
        public var sessionID: String
        public var url: String
        public var plan: String?
        public var interval: String?
        public var seats: Int?
    }

    /// A subscription Checkout Session of this tenant that can still be paid.
    public func openSubscriptionSession(now: Date) async throws -> OpenSession? {
        let rows = try await connection.query("""
            SELECT session_id, url, plan, billing_interval, seats FROM billing.checkout_sessions
            WHERE tenant_id = \(tenant) AND purpose = 'subscription' AND status = 'open' AND expires_at > \(now)
            ORDER BY created_at DESC LIMIT 1
            """, logger: logger)
        for try await (id, url, plan, interval, seats) in rows.decode((String, String, String?, String?, Int?).self) {
            return OpenSession(sessionID: id, url: url, plan: plan, interval: interval, seats: seats)
        }
        return nil
    }

    /// Every Checkout Session of this tenant that may still be paid.
    public func openSessions(now: Date) async throws -> [String] {
        var sessions: [String] = []
        let rows = try await connection.query(
            "SELECT session_id FROM billing.checkout_sessions WHERE tenant_id = \(tenant) AND status = 'open' AND expires_at > \(now)",
            logger: logger)
        for try await id in rows.decode(String.self) { sessions.append(id) }
        return sessions
    }

    public func markSessionExpired(_ sessionID: String) async throws {
        try await connection.query(
            "UPDATE billing.checkout_sessions SET status = 'expired' WHERE tenant_id = \(tenant) AND session_id = \(sessionID) AND status = 'open'",
            logger: logger)
    }

    public func recordCheckoutSession(
        sessionID: String, purpose: String, url: String, plan: String?, interval: String?, seats: Int?, expiresAt: Date, now: Date
    ) async throws {
        try await connection.query("""
            INSERT INTO billing.checkout_sessions (tenant_id, session_id, purpose, url, plan, billing_interval, seats, expires_at, created_at)
            VALUES (\(tenant), \(sessionID), \(purpose), \(url), \(plan), \(interval), \(seats), \(expiresAt), \(now))
            """, logger: logger)
    }

    public struct SessionRecord: Sendable, Equatable {
        public var sessionID: String
        public var purpose: String
        public var status: String
        public var plan: String?
        public var interval: String?
        public var seats: Int?
        public var expiresAt: Date
        public var createdAt: Date
        /// The credits it buys, for a top-up.
        public var topUp: TopUpOutcome?
    }

    public struct TopUpOutcome: Sendable, Equatable {
        public var credits: Int
        public var amount: Int
        public var currency: String
        public var status: String
        public var paidAt: Date?
    }

    /// One Checkout Session this tenant opened, with its top-up when it buys credits: what a page returning from
    /// Checkout waits on.
    public func checkoutSession(_ sessionID: String) async throws -> SessionRecord? {
        let rows = try await connection.query("""
            SELECT s.session_id, s.purpose, s.status, s.plan, s.billing_interval, s.seats, s.expires_at, s.created_at,
                   t.credits, t.amount, t.currency, t.status, t.paid_at
            FROM billing.checkout_sessions s
            LEFT JOIN billing.top_ups t ON t.tenant_id = s.tenant_id AND t.session_id = s.session_id
            WHERE s.tenant_id = \(tenant) AND s.session_id = \(sessionID)
            """, logger: logger)
        for try await row in rows {
            let columns = row.makeRandomAccess()
            var record = SessionRecord(
                sessionID: try columns[0].decode(String.self), purpose: try columns[1].decode(String.self),
                status: try columns[2].decode(String.self), plan: try columns[3].decode(String?.self),
                interval: try columns[4].decode(String?.self), seats: try columns[5].decode(Int?.self),
                expiresAt: try columns[6].decode(Date.self), createdAt: try columns[7].decode(Date.self), topUp: nil)
            if let credits = try columns[8].decode(Int?.self) {
                record.topUp = TopUpOutcome(
                    credits: credits, amount: try columns[9].decode(Int.self), currency: try columns[10].decode(String.self),
                    status: try columns[11].decode(String.self), paidAt: try columns[12].decode(Date?.self))
            }
            return record
        }
        return nil
    }

    public struct TopUp: Sendable, Equatable {
        public var topUpID: UUID
        public var credits: Int
        public var status: String
        public var sessionID: String
        public var url: String
        public var expiresAt: Date
    }

    /// The pending or paid top-up named by `key`, with its session.
    public func topUp(key: String) async throws -> TopUp? {
        let rows = try await connection.query("""
            SELECT t.top_up_id, t.credits, t.status, t.session_id, s.url, s.expires_at
            FROM billing.top_ups t JOIN billing.checkout_sessions s ON s.tenant_id = t.tenant_id AND s.session_id = t.session_id
            WHERE t.tenant_id = \(tenant) AND t.idempotency_key = \(key) AND t.status IN ('pending', 'paid', 'flagged')
            """, logger: logger)
        for try await (id, credits, status, session, url, expires) in rows.decode((UUID, Int, String, String, String, Date).self) {
            return TopUp(topUpID: id, credits: credits, status: status, sessionID: session, url: url, expiresAt: expires)
        }
        return nil
    }

    /// Its session can no longer be paid: the key is free for a new top-up.
    public func expireTopUp(_ id: UUID, sessionID: String) async throws {
        try await connection.query(
            "UPDATE billing.top_ups SET status = 'expired' WHERE tenant_id = \(tenant) AND top_up_id = \(id) AND status = 'pending'",
            logger: logger)
        try await connection.query(
            "UPDATE billing.checkout_sessions SET status = 'expired' WHERE tenant_id = \(tenant) AND session_id = \(sessionID) AND status = 'open'",
            logger: logger)
    }

    public func recordTopUp(id: UUID, key: String?, credits: Int, amount: Int, currency: String, sessionID: String, now: Date) async throws {
        try await connection.query("""
            INSERT INTO billing.top_ups (tenant_id, top_up_id, idempotency_key, credits, amount, currency, session_id, created_at)
            VALUES (\(tenant), \(id), \(key), \(credits), \(amount), \(currency), \(sessionID), \(now))
            """, logger: logger)
    }

    public func audit(actor: AuditActor, action: String, before: [String: String]?, after: [String: String]?) async throws {
        try await AuditLog.record(connection, tenant: tenant, actor: actor, action: action, before: before, after: after, logger: logger)
    }
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
