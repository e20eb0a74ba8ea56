import BillingCore
import Foundation
import Logging
import PostgresNIO

public struct TopUpRecord: Sendable, Equatable {
    public var id: UUID
    public var credits: Int
    public var amount: Int
    public var currency: String
    public var status: String
    public var sessionID: String
    public var paymentIntentID: String?
}

/// The tenant's Checkout Sessions and the top-ups they sell.
public struct CheckoutStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// The tenant's Checkout Sessions and the top-ups they sell.
    public var checkout: CheckoutStore { CheckoutStore(transaction: self) }
}

extension CheckoutStore {
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

    public func recordSession(
        sessionID: String, purpose: String, url: String, plan: String?, interval: String?, seats: Int?, expiresAt: Date, now: Date
    ) async throws {
        try await connection.query("""
            INSERT INTO billing.checkout_sessions (tenant_id, session_id, purpose, url, plan, billing_interval, seats, expires_at, created_at)
            VALUES (\(tenant), \(sessionID), \(purpose), \(url), \(plan), \(interval), \(seats), \(expiresAt), \(now))
            """, logger: logger)
    }

    /// One Checkout Session this tenant opened, with its top-up when it buys credits: what a page returning from
    /// Checkout waits on.
    public func session(_ sessionID: String) async throws -> SessionRecord? {
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

    public func markSessionComplete(_ sessionID: String) async throws {
        try await connection.query(
            "UPDATE billing.checkout_sessions SET status = 'complete' WHERE tenant_id = \(tenant) AND session_id = \(sessionID)",
            logger: logger)
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

    /// The top-up by its id, its Checkout Session or its PaymentIntent (whichever is known), locked.
    public func lockTopUp(id: UUID?, sessionID: String?, paymentIntentID: String?) async throws -> TopUpRecord? {
        let rows = try await connection.query("""
            SELECT top_up_id, credits, amount, currency, status, session_id, payment_intent_id FROM billing.top_ups
            WHERE tenant_id = \(tenant)
              AND (top_up_id = \(id) OR session_id = \(sessionID) OR payment_intent_id = \(paymentIntentID))
            ORDER BY (top_up_id = \(id)) IS TRUE DESC
            LIMIT 1 FOR UPDATE
            """, logger: logger)
        for try await (id, credits, amount, currency, status, session, intent)
            in rows.decode((UUID, Int, Int, String, String, String, String?).self)
        {
            return TopUpRecord(id: id, credits: credits, amount: amount, currency: currency, status: status,
                               sessionID: session, paymentIntentID: intent)
        }
        return nil
    }

    /// Sets what is given; `nil` leaves a column as it is.
    public func updateTopUp(
        _ id: UUID, status: String, paymentIntentID: String? = nil, paidAt: Date? = nil, lastFailure: String? = nil, flag: String? = nil
    ) async throws {
        try await connection.query("""
            UPDATE billing.top_ups SET status = \(status),
                payment_intent_id = coalesce(\(paymentIntentID), payment_intent_id), paid_at = coalesce(\(paidAt), paid_at),
                last_failure = coalesce(\(lastFailure), last_failure), flag = coalesce(\(flag), flag)
            WHERE tenant_id = \(tenant) AND top_up_id = \(id)
            """, logger: logger)
    }
}
