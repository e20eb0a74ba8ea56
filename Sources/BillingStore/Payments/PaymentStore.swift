import BillingCore
import Foundation
import Logging
import PostgresNIO

public struct PaymentRecord: Sendable, Equatable {
    public var paymentID: String
    public var paymentIntentID: String?
    public var chargeID: String?
    public var amount: Int
    /// What is refunded now: failed refunds no longer count.
    public var amountRefunded: Int
    /// The highest `amount_refunded` a charge event has shown (a failed refund lowers Stripe's figure later).
    public var chargeAmountRefunded: Int
    public var currency: String
    public var purpose: String
    public var topUpID: UUID?
    public var stripeInvoiceID: String?
    public var credits: Int
    public var creditsTakenBack: Int
    public var creditsFrozen: Int
    public var disputeStatus: DisputeOutcome
    public var createdAt: Date

    public init(
        paymentID: String, paymentIntentID: String?, chargeID: String?, amount: Int, amountRefunded: Int,
        chargeAmountRefunded: Int? = nil, currency: String, purpose: String, topUpID: UUID?, stripeInvoiceID: String?, credits: Int = 0,
        creditsTakenBack: Int = 0, creditsFrozen: Int = 0, disputeStatus: DisputeOutcome = .none, createdAt: Date
    ) {
        self.paymentID = paymentID
        self.paymentIntentID = paymentIntentID
        self.chargeID = chargeID
        self.amount = amount
        self.amountRefunded = amountRefunded
        self.chargeAmountRefunded = chargeAmountRefunded ?? amountRefunded
        self.currency = currency
        self.purpose = purpose
        self.topUpID = topUpID
        self.stripeInvoiceID = stripeInvoiceID
        self.credits = credits
        self.creditsTakenBack = creditsTakenBack
        self.creditsFrozen = creditsFrozen
        self.disputeStatus = disputeStatus
        self.createdAt = createdAt
    }

    public var amountRefundable: Int { amount - amountRefunded }
}

public struct DisputeRecord: Sendable, Equatable {
    public var disputeID: String
    public var paymentID: String
    public var amount: Int
    public var currency: String
    public var reason: String?
    public var status: String
    public var openedAt: Date
    public var closedAt: Date?
    public var lastEventAt: Date

    public init(
        disputeID: String, paymentID: String, amount: Int, currency: String, reason: String?, status: String, openedAt: Date,
        closedAt: Date?, lastEventAt: Date
    ) {
        self.disputeID = disputeID
        self.paymentID = paymentID
        self.amount = amount
        self.currency = currency
        self.reason = reason
        self.status = status
        self.openedAt = openedAt
        self.closedAt = closedAt
        self.lastEventAt = lastEventAt
    }
}

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

/// The tenant's payments, with their refunds and disputes.
public struct PaymentStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// The tenant's payments, with their refunds and disputes.
    public var payments: PaymentStore { PaymentStore(transaction: self) }
}

extension PaymentStore {
    static let columns = """
        payment_id, payment_intent_id, charge_id, amount, amount_refunded, charge_amount_refunded, currency, purpose, top_up_id,
        stripe_invoice_id, credits, credits_taken_back, credits_frozen, dispute_status, created_at
        """

    /// Rows of `paymentColumns` as records.
    func decodePayments(_ rows: PostgresRowSequence) async throws -> [PaymentRecord] {
        var payments: [PaymentRecord] = []
        for try await (paymentID, intent, charge, amount, refunded, chargeRefunded, currency, purpose, topUp, invoice, credits,
                       takenBack, frozen, dispute, created)
            in rows.decode((String, String?, String?, Int, Int, Int, String, String, UUID?, String?, Int, Int, Int, String, Date).self)
        {
            payments.append(PaymentRecord(
                paymentID: paymentID, paymentIntentID: intent, chargeID: charge, amount: amount, amountRefunded: refunded,
                chargeAmountRefunded: chargeRefunded, currency: currency, purpose: purpose, topUpID: topUp, stripeInvoiceID: invoice,
                credits: credits, creditsTakenBack: takenBack, creditsFrozen: frozen, disputeStatus: DisputeOutcome(rawValue: dispute) ?? .none, createdAt: created))
        }
        return payments
    }

    /// Payments newest first, after the keyset `(createdAt, paymentID)` when given.
    public func page(before: (Date, String)?, limit: Int) async throws -> [PaymentRecord] {
        try await decodePayments(connection.query("""
            SELECT \(unescaped: Self.columns) FROM billing.payments
            WHERE tenant_id = \(tenant)
              AND (\(before?.0)::timestamptz IS NULL OR (created_at, payment_id) < (\(before?.0)::timestamptz, \(before?.1)::text))
            ORDER BY created_at DESC, payment_id DESC
            LIMIT \(limit)
            """, logger: logger))
    }

    /// Holds the payment id `key` until the transaction ends, whether or not its row exists yet, so two events about a
    /// new payment (`payment_intent.succeeded` and `charge.succeeded` arrive together) do not both insert it: the
    /// second waits, then finds the row the first made.
    public func lockKey(_ key: String) async throws {
        try await connection.query(
            "SELECT pg_advisory_xact_lock(hashtextextended('payment:' || \(tenant.uuidString) || ':' || \(key), 0))", logger: logger)
    }

    /// The payment by its id, PaymentIntent or charge, locked.
    public func lock(_ id: String) async throws -> PaymentRecord? {
        try await decodePayments(connection.query("""
            SELECT \(unescaped: Self.columns) FROM billing.payments
            WHERE tenant_id = \(tenant) AND (payment_id = \(id) OR payment_intent_id = \(id) OR charge_id = \(id))
            LIMIT 1 FOR UPDATE
            """, logger: logger)).first
    }

    public func insert(_ record: PaymentRecord) async throws {
        try await connection.query("""
            INSERT INTO billing.payments (tenant_id, payment_id, payment_intent_id, charge_id, amount, amount_refunded,
                charge_amount_refunded, currency, purpose, top_up_id, stripe_invoice_id, credits, credits_taken_back, credits_frozen,
                dispute_status, created_at)
            VALUES (\(tenant), \(record.paymentID), \(record.paymentIntentID), \(record.chargeID), \(record.amount),
                \(record.amountRefunded), \(record.chargeAmountRefunded), \(record.currency), \(record.purpose), \(record.topUpID), \(record.stripeInvoiceID),
                \(record.credits), \(record.creditsTakenBack), \(record.creditsFrozen), \(record.disputeStatus.rawValue), \(record.createdAt))
            """, logger: logger)
    }

    public func update(_ record: PaymentRecord, now: Date) async throws {
        try await connection.query("""
            UPDATE billing.payments SET payment_intent_id = \(record.paymentIntentID), charge_id = \(record.chargeID),
                amount = \(record.amount), amount_refunded = \(record.amountRefunded),
                charge_amount_refunded = \(record.chargeAmountRefunded), currency = \(record.currency),
                purpose = \(record.purpose), top_up_id = \(record.topUpID), stripe_invoice_id = \(record.stripeInvoiceID),
                credits = \(record.credits), credits_taken_back = \(record.creditsTakenBack), credits_frozen = \(record.creditsFrozen),
                dispute_status = \(record.disputeStatus.rawValue), updated_at = \(now)
            WHERE tenant_id = \(tenant) AND payment_id = \(record.paymentID)
            """, logger: logger)
    }

    /// Links the payment of `paymentIntentID` to a Stripe invoice; false when no such payment is recorded yet.
    @discardableResult
    public func link(_ paymentIntentID: String, toInvoice invoiceID: String) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.payments SET stripe_invoice_id = \(invoiceID),
                              purpose = CASE WHEN purpose = 'other' THEN 'subscription' ELSE purpose END
                       WHERE tenant_id = \(tenant) AND payment_intent_id = \(paymentIntentID) RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) ?? 0 > 0
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

    /// Records or updates a refund, never moving it back: a failed or canceled refund stays so, and a succeeded one
    /// does not return to pending when an older event arrives late. Returns its status before, nil when it is new.
    public func upsertRefund(
        id: String, paymentID: String, amount: Int, currency: String, status: String, reason: String?,
        failureReason: String? = nil, createdAt: Date, now: Date, requestKey: String? = nil
    ) async throws -> (before: String?, after: String) {
        let rows = try await connection.query("""
            WITH earlier AS (
                -- The statement's snapshot: the row as it was before this upsert (no FOR UPDATE, which would skip the
                -- row once the upsert below has changed it).
                SELECT status FROM billing.refunds WHERE tenant_id = \(tenant) AND refund_id = \(id)
            )
            INSERT INTO billing.refunds (tenant_id, refund_id, payment_id, amount, currency, status, reason, failure_reason,
                created_at, updated_at, request_key)
            VALUES (\(tenant), \(id), \(paymentID), \(amount), \(currency), \(status), \(reason), \(failureReason), \(createdAt),
                \(now), \(requestKey))
            ON CONFLICT (tenant_id, refund_id) DO UPDATE SET
                status = CASE WHEN billing.refund_status_rank(EXCLUDED.status) > billing.refund_status_rank(refunds.status)
                              THEN EXCLUDED.status ELSE refunds.status END,
                failure_reason = coalesce(refunds.failure_reason, EXCLUDED.failure_reason),
                reason = coalesce(EXCLUDED.reason, refunds.reason),
                updated_at = EXCLUDED.updated_at, request_key = coalesce(refunds.request_key, EXCLUDED.request_key)
            RETURNING (SELECT status FROM earlier), status
            """, logger: logger)
        for try await (before, after) in rows.decode((String?, String).self) { return (before, after) }
        return (nil, status)
    }

    public func lockDispute(_ id: String) async throws -> DisputeRecord? {
        let rows = try await connection.query("""
            SELECT dispute_id, payment_id, amount, currency, reason, status, opened_at, closed_at, last_event_at
            FROM billing.disputes WHERE tenant_id = \(tenant) AND dispute_id = \(id) FOR UPDATE
            """, logger: logger)
        for try await (id, payment, amount, currency, reason, status, opened, closed, last)
            in rows.decode((String, String, Int, String, String?, String, Date, Date?, Date).self)
        {
            return DisputeRecord(disputeID: id, paymentID: payment, amount: amount, currency: currency, reason: reason,
                                 status: status, openedAt: opened, closedAt: closed, lastEventAt: last)
        }
        return nil
    }

    public func saveDispute(_ record: DisputeRecord) async throws {
        try await connection.query("""
            INSERT INTO billing.disputes (tenant_id, dispute_id, payment_id, amount, currency, reason, status, opened_at, closed_at, last_event_at)
            VALUES (\(tenant), \(record.disputeID), \(record.paymentID), \(record.amount), \(record.currency), \(record.reason),
                \(record.status), \(record.openedAt), \(record.closedAt), \(record.lastEventAt))
            ON CONFLICT (tenant_id, dispute_id) DO UPDATE SET amount = EXCLUDED.amount, reason = EXCLUDED.reason,
                status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, last_event_at = EXCLUDED.last_event_at
            """, logger: logger)
    }
}
