import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import Logging
import StripeAPI

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

/// `billing.entitlements`: what the tenant may use now, in one call.
public struct Entitlements: Encodable, Sendable {
    public var tenantId: String
    /// The plan the tenant is on (paid for, or the default plan).
    public var plan: String
    public var status: String
    public var entitled: Bool
    @OrNull public var graceEndsAt: Date?
    public var seats: Int
    /// Whose features and limits apply now: `plan` while entitled, the default plan otherwise.
    public var featuresPlan: String
    public var features: [String]
    public var limits: [String: Int]
}

extension BillingService {
    func status(of tenant: UUID) async throws -> BillingStatus {
        guard let row = try await tenants.status(of: tenant) else {
            throw BillingError.notFound("tenant \(tenant.uuidString.lowercased()) does not exist or was deleted; provision it with tenants.provision")
        }
        return BillingStatus(tenant: tenant, row: row, catalog: catalog, now: now(), grace: settings.pastDueGrace)
    }

    /// `billing.entitlements`.
    func entitlements(of tenant: UUID) async throws -> Entitlements {
        let status = try await status(of: tenant)
        let fallback = try catalog.plan(named: catalog.defaultPlan)
        let plan = (try? catalog.plan(named: status.plan)) ?? fallback
        let applies = status.entitled ? plan : fallback
        return Entitlements(
            tenantId: tenant.uuidString.lowercased(), plan: plan.key, status: status.status, entitled: status.entitled,
            graceEndsAt: status.graceEndsAt, seats: status.seats, featuresPlan: applies.key, features: applies.features,
            limits: applies.limits)
    }
}
