import Foundation
import Logging
import PostgresNIO

public struct RefundRecord: Sendable, Equatable {
    public var refundID: String
    public var paymentID: String
    public var amount: Int
    public var currency: String
    /// pending, requires_action, succeeded, failed or canceled, as Stripe says.
    public var status: String
    public var reason: String?
    /// Why Stripe could not return the money, for a failed refund.
    public var failureReason: String?
    public var createdAt: Date

    public init(
        refundID: String, paymentID: String, amount: Int, currency: String, status: String, reason: String?,
        failureReason: String? = nil, createdAt: Date
    ) {
        self.refundID = refundID
        self.paymentID = paymentID
        self.amount = amount
        self.currency = currency
        self.status = status
        self.reason = reason
        self.failureReason = failureReason
        self.createdAt = createdAt
    }

    /// Failed and canceled refunds returned nothing and never change again.
    public static func isFinal(_ status: String) -> Bool { status == "failed" || status == "canceled" }
}

/// One audit event as stored (before and after as JSON text).
public struct AuditRecord: Sendable, Equatable {
    public var id: Int
    public var actorType: String
    public var actor: String
    public var action: String
    public var before: String?
    public var after: String?
    public var createdAt: Date
}

/// A tenant as operators see it (deleted ones included until purged).
public struct TenantListing: Sendable, Equatable {
    public var id: UUID
    public var name: String
    public var email: String
    public var stripeCustomerID: String?
    public var createdAt: Date
    public var deletedAt: Date?
}

extension TenantTransaction {
    // MARK: Lifecycle

    /// The tenant, deleted or not, locked; nil when it never existed. `exclusive` (its deletion): `FOR UPDATE`, which
    /// also waits for every transaction holding the row to check it is live (`holdTenantIfLive`); otherwise as
    /// `lockTenant`.
    public func lockTenantIncludingDeleted(exclusive: Bool = false) async throws -> TenantListing? {
        let rows = try await connection.query("""
            SELECT id, name, email, stripe_customer_id, created_at, deleted_at FROM billing.tenants WHERE id = \(tenant)
            \(unescaped: exclusive ? "FOR UPDATE" : "FOR NO KEY UPDATE")
            """, logger: logger)
        for try await (id, name, email, customer, created, deleted) in rows.decode((UUID, String, String, String?, Date, Date?).self) {
            return TenantListing(id: id, name: name, email: email, stripeCustomerID: customer, createdAt: created, deletedAt: deleted)
        }
        return nil
    }

    /// Saves the card future invoices charge (nil: none, it was removed), unless a change made later is recorded.
    /// True when saved.
    public func setDefaultPaymentMethod(_ paymentMethod: String?, savedAt time: Date) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.tenants SET default_payment_method = \(paymentMethod), default_payment_method_at = \(time)
                       WHERE id = \(tenant) AND (default_payment_method_at IS NULL OR default_payment_method_at <= \(time))
                       RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) == 1
    }

    /// The card future invoices charge, if one was saved.
    public func defaultPaymentMethod() async throws -> String? {
        try await connection.first(
            "SELECT default_payment_method FROM billing.tenants WHERE id = \(tenant)", as: String?.self, logger: logger) ?? nil
    }

    /// Takes a token from the tenant's bucket for `name` (migration 0017): nil when taken, else how long until one is.
    public func takeRateToken(_ name: String, perMinute: Int, burst: Int, now: Date) async throws -> Duration? {
        let wait = try await connection.first(
            "SELECT billing.take_rate_token(\(name), \(perMinute)::integer, \(burst)::integer, \(now))", as: Double.self, logger: logger) ?? 0
        return wait > 0 ? .milliseconds(Int((wait * 1000).rounded(.up))) : nil
    }

    /// Whether any of the tenant's subscriptions was ever trialing (migration 0016 marks it): one free trial each.
    public func trialUsed() async throws -> Bool {
        try await connection.first(
            "SELECT trial_used_at IS NOT NULL FROM billing.tenants WHERE id = \(tenant)", as: Bool.self, logger: logger) ?? false
    }

    public func markDeleted(at time: Date) async throws {
        try await connection.query(
            "UPDATE billing.tenants SET deleted_at = \(time) WHERE id = \(tenant) AND deleted_at IS NULL", logger: logger)
    }

    // MARK: Payments and refunds

    /// Payments newest first, after the keyset `(createdAt, paymentID)` when given.
    public func payments(before: (Date, String)?, limit: Int) async throws -> [PaymentRecord] {
        try await decodePayments(connection.query("""
            SELECT \(unescaped: Self.paymentColumns) FROM billing.payments
            WHERE tenant_id = \(tenant)
              AND (\(before?.0)::timestamptz IS NULL OR (created_at, payment_id) < (\(before?.0)::timestamptz, \(before?.1)::text))
            ORDER BY created_at DESC, payment_id DESC
            LIMIT \(limit)
            """, logger: logger))
    }

    /// The refunds of these payments, oldest first.
    public func refunds(of paymentIDs: [String]) async throws -> [RefundRecord] {
        guard !paymentIDs.isEmpty else { return [] }
        return try await decodeRefunds(connection.query("""
            SELECT \(unescaped: Self.refundColumns) FROM billing.refunds
            WHERE tenant_id = \(tenant) AND payment_id = ANY(\(paymentIDs))
            ORDER BY created_at, refund_id
            """, logger: logger))
    }

    /// The refund an operator's earlier identical request made.
    public func refund(paymentID: String, requestKey: String) async throws -> RefundRecord? {
        try await decodeRefunds(connection.query("""
            SELECT \(unescaped: Self.refundColumns) FROM billing.refunds
            WHERE tenant_id = \(tenant) AND payment_id = \(paymentID) AND request_key = \(requestKey)
            """, logger: logger)).first
    }

    static let refundColumns = "refund_id, payment_id, amount, currency, status, reason, failure_reason, created_at"

    func decodeRefunds(_ rows: PostgresRowSequence) async throws -> [RefundRecord] {
        var refunds: [RefundRecord] = []
        for try await (id, payment, amount, currency, status, reason, failure, created)
            in rows.decode((String, String, Int, String, String, String?, String?, Date).self)
        {
            refunds.append(RefundRecord(refundID: id, paymentID: payment, amount: amount, currency: currency, status: status,
                                        reason: reason, failureReason: failure, createdAt: created))
        }
        return refunds
    }

    /// A payment's refunds recorded here, added up: those standing (including ones Stripe has not confirmed by webhook
    /// yet) and those that failed or were canceled.
    public func refundTotals(paymentID: String) async throws -> (standing: Int, failed: Int) {
        let rows = try await connection.query("""
            SELECT coalesce(sum(amount) FILTER (WHERE status NOT IN ('failed', 'canceled')), 0)::bigint,
                   coalesce(sum(amount) FILTER (WHERE status IN ('failed', 'canceled')), 0)::bigint
            FROM billing.refunds WHERE tenant_id = \(tenant) AND payment_id = \(paymentID)
            """, logger: logger)
        for try await (standing, failed) in rows.decode((Int, Int).self) { return (standing, failed) }
        return (0, 0)
    }

    // MARK: Audit

    /// Audit events newest first, older than `before` (an event id) when given.
    public func auditEvents(before: Int?, limit: Int) async throws -> [AuditRecord] {
        let rows = try await connection.query("""
            SELECT event_id, actor_type, actor, action, before::text, after::text, created_at FROM billing.audit_events
            WHERE tenant_id = \(tenant) AND (\(before)::bigint IS NULL OR event_id < \(before)::bigint)
            ORDER BY event_id DESC
            LIMIT \(limit)
            """, logger: logger)
        var events: [AuditRecord] = []
        for try await (id, actorType, actor, action, before, after, created)
            in rows.decode((Int, String, String, String, String?, String?, Date).self)
        {
            events.append(AuditRecord(id: id, actorType: actorType, actor: actor, action: action, before: before, after: after, createdAt: created))
        }
        return events
    }
}
