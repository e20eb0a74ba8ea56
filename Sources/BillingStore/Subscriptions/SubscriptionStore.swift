import BillingCore
import Foundation
import Logging
import PostgresNIO

/// A tenant's Stripe subscription as we keep it.
public struct SubscriptionRecord: Sendable, Equatable {
    public var stripeSubscriptionID: String
    public var stripeCustomerID: String?
    public var stripePriceID: String?
    public var plan: String
    public var interval: String
    public var seats: Int
    public var status: SubscriptionStatus
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
        seats: Int, status: SubscriptionStatus, pastDueSince: Date?, currentPeriodEnd: Date?, cancelAtPeriodEnd: Bool,
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

    public var isTerminal: Bool { status.isTerminal }
}

/// The tenant's subscriptions: Stripe's, and the ones this server bills by invoice.
public struct SubscriptionStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// The tenant's subscriptions: Stripe's, and the ones this server bills by invoice.
    public var subscriptions: SubscriptionStore { SubscriptionStore(transaction: self) }
}

extension SubscriptionStore {
    /// The one column list every read of a subscription decodes (`decodeSubscriptions`).
    static let columns = """
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
            guard let status = SubscriptionStatus(rawValue: status) else {
                throw StoreError.database(operation: "read subscription \(id)", message: "unknown status '\(status)'", sqlState: nil)
            }
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

    /// The tenant's current subscription is its newest live one, or, when none is live, its newest one: events
    /// about an older subscription, however late, never displace a newer one.
    func pickCurrent() async throws {
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

    /// The current subscription's plan and status when it is still live (anything but canceled or expired).
    public func livePlan() async throws -> (plan: String, status: String)? {
        let rows = try await connection.query("""
            SELECT plan, status FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND is_current AND status NOT IN \(unescaped: SubscriptionStatus.terminalSQL)
            """, logger: logger)
        for try await (plan, status) in rows.decode((String, String).self) { return (plan, status) }
        return nil
    }

    /// The subscription, locked until the transaction ends (events about it apply one at a time).
    public func lock(_ id: String) async throws -> SubscriptionRecord? {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.columns)
            FROM billing.subscriptions WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(id) FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows).first
    }

    public struct PendingChange: Sendable, Equatable {
        public enum Source: String, Sendable { case request, schedule }
        public var plan: String
        public var interval: String?
        public var effectiveAt: Date?
        public var source: Source = .request
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
            WHERE tenant_id = \(tenant) AND is_current AND status = \(SubscriptionStatus.pastDue.rawValue) AND past_due_since <= \(since)
              AND grace_notified_at IS NULL
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        return try await decodeSubscriptions(rows).first
    }

    /// The tenant's current subscription, locked.
    public func current() async throws -> SubscriptionRecord? {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.columns)
            FROM billing.subscriptions WHERE tenant_id = \(tenant) AND is_current FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows).first
    }

    /// Every subscription of the tenant that is still live.
    public func allLive() async throws -> [SubscriptionRecord] {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.columns)
            FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND status NOT IN \(unescaped: SubscriptionStatus.terminalSQL)
            FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows)
    }

    /// The tenant's subscriptions with this customer that are still live.
    public func live(customer: String) async throws -> [SubscriptionRecord] {
        let rows = try await connection.query("""
            SELECT \(unescaped: Self.columns)
            FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND stripe_customer_id = \(customer) AND status NOT IN \(unescaped: SubscriptionStatus.terminalSQL)
            FOR UPDATE
            """, logger: logger)
        return try await decodeSubscriptions(rows)
    }

    /// Inserts a subscription new to us (false when another transaction just did), then picks the current one.
    public func insert(_ record: SubscriptionRecord, now: Date) async throws -> Bool {
        let inserted = try await connection.first("""
            WITH i AS (
                INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, stripe_customer_id, stripe_price_id, plan,
                    billing_interval, seats, status, past_due_since, current_period_end, cancel_at_period_end, is_current,
                    last_event_at, stripe_created_at, created_at, updated_at, cancel_at, stripe_schedule_id, pending_update_expires_at)
                VALUES (\(tenant), \(record.stripeSubscriptionID), \(record.stripeCustomerID), \(record.stripePriceID), \(record.plan),
                    \(record.interval), \(record.seats), \(record.status.rawValue), \(record.pastDueSince), \(record.currentPeriodEnd),
                    \(record.cancelAtPeriodEnd), false, \(record.lastEventAt), \(record.stripeCreatedAt), \(now), \(now),
                    \(record.cancelAt), \(record.scheduleID), \(record.pendingUpdateExpiresAt))
                ON CONFLICT (tenant_id, stripe_subscription_id) DO NOTHING RETURNING 1)
            SELECT count(*)::int FROM i
            """, as: Int.self, logger: logger) == 1
        if inserted { try await pickCurrent() }
        return inserted
    }

    public func update(_ record: SubscriptionRecord, now: Date) async throws {
        try await connection.query("""
            UPDATE billing.subscriptions SET stripe_customer_id = \(record.stripeCustomerID), stripe_price_id = \(record.stripePriceID),
                plan = \(record.plan), billing_interval = \(record.interval), seats = \(record.seats), status = \(record.status.rawValue),
                past_due_since = \(record.pastDueSince), current_period_end = \(record.currentPeriodEnd),
                cancel_at_period_end = \(record.cancelAtPeriodEnd), last_event_at = \(record.lastEventAt),
                cancel_at = \(record.cancelAt), stripe_schedule_id = \(record.scheduleID),
                pending_update_expires_at = \(record.pendingUpdateExpiresAt),
                stripe_created_at = coalesce(\(record.stripeCreatedAt), stripe_created_at), updated_at = \(now),
                grace_notified_at = CASE WHEN \(record.status.rawValue) = \(SubscriptionStatus.pastDue.rawValue) AND past_due_since = \(record.pastDueSince)
                                         THEN grace_notified_at END
            WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(record.stripeSubscriptionID)
            """, logger: logger)
        try await pickCurrent()
    }

    /// Starts a subscription this server bills by invoice; it becomes the tenant's current one.
    public func insertInvoiceBilled(
        id: String, plan: String, interval: String, seats: Int, periodStart: Date, periodEnd: Date, now: Date
    ) async throws {
        try await connection.query("""
            INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, plan, billing_interval, seats, status,
                current_period_start, current_period_end, billing_mode, is_current, stripe_created_at, created_at, updated_at)
            VALUES (\(tenant), \(id), \(plan), \(interval), \(seats), \(SubscriptionStatus.active.rawValue), \(periodStart), \(periodEnd), 'invoice', false,
                \(now), \(now), \(now))
            """, logger: logger)
        try await pickCurrent()
    }

    /// The current subscription when this server bills it by invoice, with its period's start; locked.
    public func invoiceBilled() async throws -> (record: SubscriptionRecord, periodStart: Date)? {
        guard let current = try await current() else { return nil }
        let start = try await connection.first("""
            SELECT current_period_start FROM billing.subscriptions
            WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(current.stripeSubscriptionID) AND billing_mode = 'invoice'
            """, as: Date?.self, logger: logger) ?? nil
        guard let start else { return nil }
        return (current, start)
    }

    public func advancePeriod(_ subscriptionID: String, start: Date, end: Date, now: Date) async throws {
        try await connection.query("""
            UPDATE billing.subscriptions SET current_period_start = \(start), current_period_end = \(end), updated_at = \(now)
            WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(subscriptionID)
            """, logger: logger)
    }
}
