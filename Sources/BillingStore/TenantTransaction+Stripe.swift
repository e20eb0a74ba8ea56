import BillingCore
import Foundation
import Logging
import PostgresNIO

// What processing a Stripe event reads and writes, in the resolved tenant's transaction.

/// A tenant's Stripe subscription as we keep it.
public struct SubscriptionRecord: Sendable, Equatable {
    public var stripeSubscriptionID: String
    public var stripeCustomerID: String?
    public var stripePriceID: String?
    public var plan: String
    public var interval: String
    public var seats: Int
    public var status: String
    public var pastDueSince: Date?
    public var currentPeriodEnd: Date?
    public var cancelAtPeriodEnd: Bool
    public var isCurrent: Bool
    public var lastEventAt: Date?
    /// When Stripe created it: the tenant's current subscription is its newest live one.
    public var stripeCreatedAt: Date?
    /// When our row last changed (read only).
    public var updatedAt: Date?
    /// When a scheduled cancellation takes effect (Stripe's `cancel_at`, which may be before the period's end).
    public var cancelAt: Date?
    /// The Stripe subscription schedule that governs it, if any: its phases decide what comes next.
    public var scheduleID: String?
    /// An upgrade waiting for its invoice to be paid (Stripe's `pending_update`) lapses then.
    public var pendingUpdateExpiresAt: Date?

    /// Whether it is set to end: at the period's end, or at `cancelAt`.
    public var cancellationScheduled: Bool { cancelAtPeriodEnd || cancelAt != nil }

    public init(
        stripeSubscriptionID: String, stripeCustomerID: String?, stripePriceID: String?, plan: String, interval: String,
        seats: Int, status: String, pastDueSince: Date?, currentPeriodEnd: Date?, cancelAtPeriodEnd: Bool,
        isCurrent: Bool = true, lastEventAt: Date?, stripeCreatedAt: Date? = nil
    ) {
        self.stripeCreatedAt = stripeCreatedAt
        self.stripeSubscriptionID = stripeSubscriptionID
        self.stripeCustomerID = stripeCustomerID
        self.stripePriceID = stripePriceID
        self.plan = plan
        self.interval = interval
        self.seats = seats
        self.status = status
        self.pastDueSince = pastDueSince
        self.currentPeriodEnd = currentPeriodEnd
        self.cancelAtPeriodEnd = cancelAtPeriodEnd
        self.isCurrent = isCurrent
        self.lastEventAt = lastEventAt
    }

    /// Canceled and expired subscriptions never come back: Stripe makes a new subscription instead.

    public var isTerminal: Bool { SubscriptionStatus.isTerminal(status) }
}

public struct TopUpRecord: Sendable, Equatable {
    public var id: UUID
    public var credits: Int
    public var amount: Int
    public var currency: String
    public var status: String
    public var sessionID: String
    public var paymentIntentID: String?
}

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

public struct StripeInvoiceRecord: Sendable, Equatable {
    public var invoiceID: String
    public var stripeSubscriptionID: String?
    public var number: String?
    public var status: String?
    public var amountDue: Int
    public var amountPaid: Int
    public var amountRemaining: Int
    public var currency: String?
    public var hostedInvoiceURL: String?
    public var attemptCount: Int
    public var nextPaymentAttempt: Date?
    public var paymentProblem: String?
    public var periodStart: Date?
    public var periodEnd: Date?
    public var lastEventAt: Date
    public var createdAt: Date

    public init(
        invoiceID: String, stripeSubscriptionID: String?, number: String?, status: String?, amountDue: Int, amountPaid: Int,
        amountRemaining: Int, currency: String?, hostedInvoiceURL: String?, attemptCount: Int, nextPaymentAttempt: Date?,
        paymentProblem: String?, periodStart: Date?, periodEnd: Date?, lastEventAt: Date, createdAt: Date
    ) {
        self.invoiceID = invoiceID
        self.stripeSubscriptionID = stripeSubscriptionID
        self.number = number
        self.status = status
        self.amountDue = amountDue
        self.amountPaid = amountPaid
        self.amountRemaining = amountRemaining
        self.currency = currency
        self.hostedInvoiceURL = hostedInvoiceURL
        self.attemptCount = attemptCount
        self.nextPaymentAttempt = nextPaymentAttempt
        self.paymentProblem = paymentProblem
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.lastEventAt = lastEventAt
        self.createdAt = createdAt
    }
}

extension TenantTransaction {
    // MARK: Tenant

    /// Links the tenant to a Stripe customer when it has none (a Checkout that created the customer).
    public func linkCustomerIfUnset(_ customer: String) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.tenants SET stripe_customer_id = \(customer)
                       WHERE id = \(tenant) AND stripe_customer_id IS NULL RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) == 1
    }

    /// `customer.deleted`: the tenant no longer has this customer. True when it had it.
    public func unlinkCustomer(_ customer: String) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.tenants SET stripe_customer_id = NULL
                       WHERE id = \(tenant) AND stripe_customer_id = \(customer) RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) == 1
    }

    // MARK: Subscriptions

    /// The one column list every read of a subscription decodes (`decodeSubscriptions`).
    static let subscriptionColumns = """
        stripe_subscription_id, stripe_customer_id, stripe_price_id, plan, billing_interval, seats, status, past_due_since,
        current_period_end, cancel_at_period_end, is_current, last_event_at, stripe_created_at, updated_at, cancel_at,
        stripe_schedule_id, pending_update_expires_at
        """

    func decodeSubscriptions(_ rows: PostgresRowSequence) async throws -> [SubscriptionRecord] {
        var records: [SubscriptionRecord] = []
        for try await (id, customer, price, plan, interval, seats, status, pastDue, periodEnd, cancel, current, last, created, updated,
                       cancelAt, schedule, pendingUpdate)
            in rows.decode((String, String?, String?, String, String, Int, String, Date?, Date?, Bool, Bool, Date?, Date?, Date,
                            Date?, String?, Date?).self)
        {
            var record = SubscriptionRecord(
                stripeSubscriptionID: id, stripeCustomerID: customer, stripePriceID: price, plan: plan, interval: interval,
                seats: seats, status: status, pastDueSince: pastDue, currentPeriodEnd: periodEnd, cancelAtPeriodEnd: cancel,
                isCurrent: current, lastEventAt: last, stripeCreatedAt: created)
            record.updatedAt = updated
            record.cancelAt = cancelAt
            record.scheduleID = schedule
            record.pendingUpdateExpiresAt = pendingUpdate
            records.append(record)
        }
        return records
    }

    /// The subscription, locked until the transaction ends (events about it apply one at a time).
    public func lockSubscription(_ id: String) async throws -> SubscriptionRecord? {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.subscriptionColumns)
            FROM billing.subscriptions WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(id) FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows).first
    }

    /// Records (or clears, with nil) a plan change that waits for the period's end.
    /// `source` says who made it: a request here (`billing.changePlan`), or a Stripe subscription schedule.
    public func setPendingChange(
        _ subscriptionID: String, plan: String?, interval: String?, effectiveAt: Date? = nil, source: PendingChange.Source = .request,
        now: Date
    ) async throws {
        try await connection.query("""
            UPDATE billing.subscriptions SET pending_plan = \(plan), pending_interval = \(interval),
                pending_effective_at = \(plan == nil ? nil : effectiveAt), pending_source = \(plan == nil ? nil : source.rawValue),
                updated_at = \(now)
            WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(subscriptionID)
            """, logger: logger)
    }

    public struct PendingChange: Sendable, Equatable {
        public enum Source: String, Sendable { case request, schedule }
        public var plan: String
        public var interval: String?
        public var effectiveAt: Date?
        public var source: Source = .request
    }

    /// The tenant's current subscription's pending plan change, if any.
    public func pendingChange() async throws -> PendingChange? {
        let rows = try await connection.query("""
            SELECT pending_plan, pending_interval, pending_effective_at, coalesce(pending_source, 'request') FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND is_current AND pending_plan IS NOT NULL
            """, logger: logger)
        for try await (plan, interval, effective, source) in rows.decode((String, String?, Date?, String).self) {
            return PendingChange(plan: plan, interval: interval, effectiveAt: effective, source: PendingChange.Source(rawValue: source) ?? .request)
        }
        return nil
    }

    /// Marks the end of the current subscription's grace period as announced; false when it is no longer past due
    /// since `since` (a newer change already said what there is to say).
    public func markGraceNotified(pastDueSince since: Date, now: Date) async throws -> SubscriptionRecord? {
        let rows = try await connection.query("""
            UPDATE billing.subscriptions SET grace_notified_at = \(now)
            WHERE tenant_id = \(tenant) AND is_current AND status = 'past_due' AND past_due_since <= \(since)
              AND grace_notified_at IS NULL
            RETURNING \(unescaped: Self.subscriptionColumns)
            """, logger: logger)
        return try await decodeSubscriptions(rows).first
    }

    /// The tenant's current subscription, locked.
    public func currentSubscription() async throws -> SubscriptionRecord? {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.subscriptionColumns)
            FROM billing.subscriptions WHERE tenant_id = \(tenant) AND is_current FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows).first
    }

    /// Every subscription of the tenant that is still live.
    public func allLiveSubscriptions() async throws -> [SubscriptionRecord] {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.subscriptionColumns)
            FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND status NOT IN \(unescaped: SubscriptionStatus.terminalSQL)
            FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows)
    }

    /// The tenant's subscriptions with this customer that are still live.
    public func liveSubscriptions(customer: String) async throws -> [SubscriptionRecord] {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.subscriptionColumns)
            FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND stripe_customer_id = \(customer) AND status NOT IN \(unescaped: SubscriptionStatus.terminalSQL)
            FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows)
    }

    /// Inserts a subscription new to us (false when another transaction just did), then picks the current one.
    public func insertSubscription(_ record: SubscriptionRecord, now: Date) async throws -> Bool {
        let inserted = try await connection.first("""
            WITH i AS (
                INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, stripe_customer_id, stripe_price_id, plan,
                    billing_interval, seats, status, past_due_since, current_period_end, cancel_at_period_end, is_current,
                    last_event_at, stripe_created_at, created_at, updated_at, cancel_at, stripe_schedule_id, pending_update_expires_at)
                VALUES (\(tenant), \(record.stripeSubscriptionID), \(record.stripeCustomerID), \(record.stripePriceID), \(record.plan),
                    \(record.interval), \(record.seats), \(record.status), \(record.pastDueSince), \(record.currentPeriodEnd),
                    \(record.cancelAtPeriodEnd), false, \(record.lastEventAt), \(record.stripeCreatedAt), \(now), \(now),
                    \(record.cancelAt), \(record.scheduleID), \(record.pendingUpdateExpiresAt))
                ON CONFLICT (tenant_id, stripe_subscription_id) DO NOTHING RETURNING 1)
            SELECT count(*)::int FROM i
            """, as: Int.self, logger: logger) == 1
        if inserted { try await pickCurrentSubscription() }
        return inserted
    }

    public func updateSubscription(_ record: SubscriptionRecord, now: Date) async throws {
        try await connection.query("""
            UPDATE billing.subscriptions SET stripe_customer_id = \(record.stripeCustomerID), stripe_price_id = \(record.stripePriceID),
                plan = \(record.plan), billing_interval = \(record.interval), seats = \(record.seats), status = \(record.status),
                past_due_since = \(record.pastDueSince), current_period_end = \(record.currentPeriodEnd),
                cancel_at_period_end = \(record.cancelAtPeriodEnd), last_event_at = \(record.lastEventAt),
                cancel_at = \(record.cancelAt), stripe_schedule_id = \(record.scheduleID),
                pending_update_expires_at = \(record.pendingUpdateExpiresAt),
                stripe_created_at = coalesce(\(record.stripeCreatedAt), stripe_created_at), updated_at = \(now),
                grace_notified_at = CASE WHEN \(record.status) = 'past_due' AND past_due_since = \(record.pastDueSince)
                                         THEN grace_notified_at END
            WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(record.stripeSubscriptionID)
            """, logger: logger)
        try await pickCurrentSubscription()
    }

    /// The tenant's current subscription is its newest live one, or, when none is live, its newest one: events
    /// about an older subscription, however late, never displace a newer one.
    func pickCurrentSubscription() async throws {
        let pick = try await connection.first("""
            SELECT stripe_subscription_id FROM billing.subscriptions WHERE tenant_id = \(tenant)
            ORDER BY status NOT IN \(unescaped: SubscriptionStatus.terminalSQL) DESC, stripe_created_at DESC NULLS LAST, created_at DESC,
                     stripe_subscription_id DESC
            LIMIT 1
            """, as: String.self, logger: logger)
        guard let pick else { return }
        // Two statements: the one-current unique index is checked row by row.
        try await connection.query("""
            UPDATE billing.subscriptions SET is_current = false
            WHERE tenant_id = \(tenant) AND is_current AND stripe_subscription_id <> \(pick)
            """, logger: logger)
        try await connection.query("""
            UPDATE billing.subscriptions SET is_current = true
            WHERE tenant_id = \(tenant) AND NOT is_current AND stripe_subscription_id = \(pick)
            """, logger: logger)
    }

    public func markSessionComplete(_ sessionID: String) async throws {
        try await connection.query(
            "UPDATE billing.checkout_sessions SET status = 'complete' WHERE tenant_id = \(tenant) AND session_id = \(sessionID)",
            logger: logger)
    }

    // MARK: Top-ups

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

    // MARK: Credits

    /// Appends a ledger entry and moves the balances (available by `amount`, frozen by `frozenDelta`) once per
    /// `source`. Returns the new available balance, or nil when that source was applied before.
    public func appendCredits(
        source: String, kind: String, amount: Int, frozenDelta: Int = 0, reason: String?, stripeEvent: String?
    ) async throws -> Int? {
        try await connection.first("""
            SELECT billing.append_credit_entry(\(tenant), \(source), \(kind), \(Int64(amount)), \(Int64(frozenDelta)), \(reason), \(stripeEvent))
            """, as: Int?.self, logger: logger) ?? nil
    }

    public func creditBalance() async throws -> (available: Int, frozen: Int) {
        let rows = try await connection.query(
            "SELECT available, frozen FROM billing.credit_balances WHERE tenant_id = \(tenant)", logger: logger)
        for try await (available, frozen) in rows.decode((Int, Int).self) { return (available, frozen) }
        return (0, 0)
    }

    // MARK: Payments

    /// Holds the payment id `key` until the transaction ends, whether or not its row exists yet, so two events about a
    /// new payment (`payment_intent.succeeded` and `charge.succeeded` arrive together) do not both insert it: the
    /// second waits, then finds the row the first made.
    public func lockPaymentKey(_ key: String) async throws {
        try await connection.query(
            "SELECT pg_advisory_xact_lock(hashtextextended('payment:' || \(tenant.uuidString) || ':' || \(key), 0))", logger: logger)
    }

    /// The payment by its id, PaymentIntent or charge, locked.
    public func lockPayment(_ id: String) async throws -> PaymentRecord? {
        try await decodePayments(connection.query("""
            SELECT \(unescaped: Self.paymentColumns) FROM billing.payments
            WHERE tenant_id = \(tenant) AND (payment_id = \(id) OR payment_intent_id = \(id) OR charge_id = \(id))
            LIMIT 1 FOR UPDATE
            """, logger: logger)).first
    }

    static let paymentColumns = """
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

    public func insertPayment(_ record: PaymentRecord) async throws {
        try await connection.query("""
            INSERT INTO billing.payments (tenant_id, payment_id, payment_intent_id, charge_id, amount, amount_refunded,
                charge_amount_refunded, currency, purpose, top_up_id, stripe_invoice_id, credits, credits_taken_back, credits_frozen,
                dispute_status, created_at)
            VALUES (\(tenant), \(record.paymentID), \(record.paymentIntentID), \(record.chargeID), \(record.amount),
                \(record.amountRefunded), \(record.chargeAmountRefunded), \(record.currency), \(record.purpose), \(record.topUpID), \(record.stripeInvoiceID),
                \(record.credits), \(record.creditsTakenBack), \(record.creditsFrozen), \(record.disputeStatus.rawValue), \(record.createdAt))
            """, logger: logger)
    }

    public func updatePayment(_ record: PaymentRecord, now: Date) async throws {
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

    // MARK: Disputes

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

    // MARK: Stripe invoices

    /// When the invoice's newest applied event was created, and its status; nil for an invoice new to us. Locks it.
    public func lockStripeInvoice(_ id: String) async throws -> (Date, String?)? {
        let rows = try await connection.query(
            "SELECT last_event_at, status FROM billing.stripe_invoices WHERE tenant_id = \(tenant) AND invoice_id = \(id) FOR UPDATE",
            logger: logger)
        for try await (last, status) in rows.decode((Date, String?).self) { return (last, status) }
        return nil
    }

    public func saveStripeInvoice(_ record: StripeInvoiceRecord, now: Date) async throws {
        try await connection.query("""
            INSERT INTO billing.stripe_invoices (tenant_id, invoice_id, stripe_subscription_id, number, status, amount_due, amount_paid,
                amount_remaining, currency, hosted_invoice_url, attempt_count, next_payment_attempt, payment_problem, period_start,
                period_end, last_event_at, created_at, updated_at)
            VALUES (\(tenant), \(record.invoiceID), \(record.stripeSubscriptionID), \(record.number), \(record.status), \(record.amountDue),
                \(record.amountPaid), \(record.amountRemaining), \(record.currency), \(record.hostedInvoiceURL), \(record.attemptCount),
                \(record.nextPaymentAttempt), \(record.paymentProblem), \(record.periodStart), \(record.periodEnd), \(record.lastEventAt),
                \(record.createdAt), \(now))
            ON CONFLICT (tenant_id, invoice_id) DO UPDATE SET stripe_subscription_id = EXCLUDED.stripe_subscription_id,
                number = EXCLUDED.number, status = EXCLUDED.status, amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid,
                amount_remaining = EXCLUDED.amount_remaining, currency = EXCLUDED.currency,
                hosted_invoice_url = EXCLUDED.hosted_invoice_url, attempt_count = EXCLUDED.attempt_count,
                next_payment_attempt = EXCLUDED.next_payment_attempt, payment_problem = EXCLUDED.payment_problem,
                period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, last_event_at = EXCLUDED.last_event_at,
                updated_at = EXCLUDED.updated_at
            """, logger: logger)
    }

    /// The payment an invoice was paid with, once both are known.
    /// The payment problem recorded for a Stripe invoice (`payment_failed`, `overdue`, ...), if any.
    public func stripeInvoiceProblem(_ id: String) async throws -> String? {
        try await connection.first(
            "SELECT payment_problem FROM billing.stripe_invoices WHERE tenant_id = \(tenant) AND invoice_id = \(id)",
            as: String?.self, logger: logger) ?? nil
    }

    /// Links the payment of `paymentIntentID` to a Stripe invoice; false when no such payment is recorded yet.
    @discardableResult
    public func linkPayment(_ paymentIntentID: String, toInvoice invoiceID: String) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.payments SET stripe_invoice_id = \(invoiceID),
                              purpose = CASE WHEN purpose = 'other' THEN 'subscription' ELSE purpose END
                       WHERE tenant_id = \(tenant) AND payment_intent_id = \(paymentIntentID) RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) ?? 0 > 0
    }
}
