import BillingCore
import BillingStore
import Foundation

// The shapes of params and results on the wire. Optional results encode as explicit nulls so the shape is stable.

/// An optional that goes on the wire as an explicit `null` when absent (synthesized encoding would leave the key out).
@propertyWrapper
public struct OrNull<Value: Encodable & Sendable>: Encodable, Sendable {
    public var wrappedValue: Value?

    public init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

extension OrNull: Equatable where Value: Equatable {}

public struct ProvisionParams: Decodable, Sendable {
    public var tenantID: String?
    public var name: String
    public var email: String

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenantId", name, email
    }
}

public struct ProvisionedTenant: Encodable, Sendable {
    public var tenantID: UUID
    public var name: String
    public var email: String
    public var stripeCustomerID: String?
    public var createdAt: Date
    /// False when this call repeated an earlier provisioning.
    public var created: Bool

    init(_ record: TenantRecord, created: Bool) {
        self.tenantID = record.id
        self.name = record.name
        self.email = record.email
        self.stripeCustomerID = record.stripeCustomerID
        self.createdAt = record.createdAt
        self.created = created
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenantId", name, email, stripeCustomerID = "stripeCustomerId", createdAt, created
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tenantID.uuidString.lowercased(), forKey: .tenantID)
        try container.encode(name, forKey: .name)
        try container.encode(email, forKey: .email)
        try container.encode(stripeCustomerID, forKey: .stripeCustomerID)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(created, forKey: .created)
    }
}

/// `billing.plans`: the catalog as clients see it (no Stripe price ids: the server alone maps plans to prices).
public struct PlanList: Encodable, Sendable {
    public struct Entry: Encodable, Sendable {
        public struct Price: Encodable, Sendable {
            var interval: BillingInterval
            var amount: Int
            var currency: String
        }
        var key: String
        var name: String
        var aliases: [String]
        var rank: Int
        var billing: BillingMode
        var trialDays: Int
        var intervals: [BillingInterval]
        var seats: SeatRule
        var prices: [Price]
        var features: [String]
        var limits: [String: Int]
    }
    var defaultPlan: String
    var plans: [Entry]
    var credits: CreditPricing

    public init(_ catalog: PlanCatalog) {
        defaultPlan = catalog.defaultPlan
        credits = catalog.credits
        plans = catalog.plans.map { plan in
            Entry(
                key: plan.key, name: plan.name, aliases: plan.aliases, rank: plan.rank, billing: plan.billing,
                trialDays: plan.trialDays, intervals: plan.intervals, seats: plan.seats,
                prices: plan.prices.map { Entry.Price(interval: $0.interval, amount: $0.amount, currency: $0.currency) },
                features: plan.features, limits: plan.limits)
        }
    }
}

/// `billing.status`.
public struct BillingStatus: Encodable, Sendable, Equatable {
    public struct PendingChange: Encodable, Sendable, Equatable {
        var plan: String
        var interval: String?
        var effectiveAt: Date?
        /// `request` (billing.changePlan) or `schedule` (a Stripe subscription schedule, as the portal makes).
        var source: String = "request"
    }

    /// An upgrade made with a payment that has not gone through: the subscription stays on its plan until it is
    /// paid, or until `expiresAt`, when the change lapses.
    public struct PendingUpdate: Encodable, Sendable, Equatable {
        var expiresAt: Date
    }
    public var tenantID: UUID
    /// The workspace's name, as provisioned.
    public var tenantName: String
    public var plan: String
    public var interval: String?
    public var status: String
    public var seats: Int
    public var currentPeriodEnd: Date?
    public var cancelAtPeriodEnd: Bool
    public var entitled: Bool
    public var graceEndsAt: Date?
    public var creditBalance: Int
    public var pendingChange: PendingChange?
    /// When a scheduled cancellation ends the subscription (nil when none is scheduled), and why:
    /// `period_end` (cancel at the period's end), `cancel_at` (a date set at Stripe) or `schedule`.
    public var cancelAt: Date?
    public var cancelReason: String?
    public var pendingUpdate: PendingUpdate?

    init(tenant: UUID, row: TenantStatusRow, catalog: PlanCatalog, now: Date, grace: Duration) {
        tenantID = tenant
        tenantName = row.tenantName
        creditBalance = row.creditsAvailable
        cancelAtPeriodEnd = row.cancelAtPeriodEnd
        currentPeriodEnd = row.currentPeriodEnd
        if row.cancelAtPeriodEnd {
            cancelAt = row.cancelAt ?? row.currentPeriodEnd
            cancelReason = "period_end"
        } else if let at = row.cancelAt {
            cancelAt = at
            cancelReason = row.scheduleID == nil ? "cancel_at" : "schedule"
        }
        pendingUpdate = row.pendingUpdateExpiresAt.map { PendingUpdate(expiresAt: $0) }
        if let plan = row.plan, let statusText = row.status, let status = SubscriptionStatus(rawValue: statusText) {
            self.plan = plan
            interval = row.interval
            self.status = statusText
            seats = row.seats ?? 1
            let verdict = Entitlement.evaluate(status: status, pastDueSince: row.pastDueSince, now: now, grace: grace)
            entitled = verdict.entitled
            graceEndsAt = verdict.graceEndsAt
            pendingChange = row.pendingPlan.map {
                PendingChange(plan: $0, interval: row.pendingInterval, effectiveAt: row.pendingEffectiveAt ?? row.currentPeriodEnd,
                              source: row.pendingSource ?? "request")
            }
        } else {
            // No subscription: the catalog's default plan, active and entitled.
            let fallback = catalog.fallbackPlan
            plan = fallback.key
            interval = nil
            status = SubscriptionStatus.active.rawValue
            seats = fallback.seats.default
            entitled = true
            graceEndsAt = nil
            pendingChange = nil
        }
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenantId", tenantName, plan, interval, status, seats, currentPeriodEnd, cancelAtPeriodEnd, entitled
        case graceEndsAt, creditBalance, pendingChange, cancelAt, cancelReason, pendingUpdate
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tenantID.uuidString.lowercased(), forKey: .tenantID)
        try container.encode(tenantName, forKey: .tenantName)
        try container.encode(plan, forKey: .plan)
        try container.encode(interval, forKey: .interval)
        try container.encode(status, forKey: .status)
        try container.encode(seats, forKey: .seats)
        try container.encode(currentPeriodEnd, forKey: .currentPeriodEnd)
        try container.encode(cancelAtPeriodEnd, forKey: .cancelAtPeriodEnd)
        try container.encode(entitled, forKey: .entitled)
        try container.encode(graceEndsAt, forKey: .graceEndsAt)
        try container.encode(creditBalance, forKey: .creditBalance)
        try container.encode(pendingChange, forKey: .pendingChange)
        try container.encode(cancelAt, forKey: .cancelAt)
        try container.encode(cancelReason, forKey: .cancelReason)
        try container.encode(pendingUpdate, forKey: .pendingUpdate)
    }
}
