import BillingCore
import BillingStore
import Foundation
import StripeAPI

public struct SeatsParams: Decodable, Sendable {
    public var seats: Int
}

public struct CancelParams: Decodable, Sendable {
    public var atPeriodEnd: Bool?
}

extension SubscriptionService {
    /// `billing.updateSeats`: checked against the plan's seat range, then the Stripe item's quantity, with proration.
    func updateSeats(_ params: SeatsParams, call: TenantCall) async throws -> BillingStatus {
        _ = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.updateSeats")
        let actor = call.actor
        let waiting = try await changeSubscription(
            call, operation: "billing.updateSeats", request: "seats=\(params.seats)", for: "change seats on",
            decide: { transaction, current in
                let plan = try catalog.plan(named: current.plan)
                guard plan.seats.isAdjustable else {
                    throw BillingError.preconditionFailed(
                        "plan '\(plan.key)' has \(plan.seats.rangeDescription) seat; to get more seats change to a plan with seats (billing.changePlan, e.g. team)")
                }
                try plan.seats.validate(params.seats, plan: plan.key)
                guard params.seats != current.seats else { return nil }
                if params.seats > current.seats { try refuseWhileUpgradeUnpaid(current) }
                if current.isInvoiceBilled {
                    // Ours to change: the next invoice bills the new count.
                    try await applyLocally(current, transaction, actor: actor, action: "subscription.seats_changed") { $0.seats = params.seats }
                    return nil
                }
                return SubscriptionChangePlan(subscription: current.stripeSubscriptionID, steps: [
                    .init(kind: .seats, action: "subscription.seats_changed", seats: params.seats, charging: params.seats > current.seats),
                ])
            },
            effects: { transaction, _, _, confirmed in
                confirmed?.pendingUpdate == nil ? nil : try await transaction.subscriptions.current()
            })
        if let waiting { throw Self.upgradeNotPaid(waiting, what: "\(params.seats) seats") }
        return try await status(of: call.tenantID)
    }

    /// `billing.cancel`: at the period end by default; at once only for an operator.
    func cancel(_ params: CancelParams, call: TenantCall) async throws -> BillingStatus {
        let atPeriodEnd = params.atPeriodEnd ?? true
        if !atPeriodEnd && call.principal.role != .operator {
            throw BillingError.forbidden(
                "cancelling at once is for operators; leave out atPeriodEnd (or set it true) to cancel at the end of the period")
        }
        _ = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.cancel")
        let actor = call.actor
        // A cancellation replaces any plan change scheduled for the period's end (and a released schedule's with it).
        let dropPendingChange = { @Sendable (transaction: TenantTransaction, current: SubscriptionRecord) async throws -> SubscriptionRecord? in
            if let pending = try await transaction.subscriptions.pendingChange(),
               pending.source == .schedule || (try? self.catalog.plan(named: pending.plan))?.isFree != true
            {
                try await transaction.subscriptions.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: self.now())
            }
            return nil
        }
        _ = try await changeSubscription(
            call, operation: "billing.cancel", request: "atPeriodEnd=\(atPeriodEnd)", for: "cancel",
            decide: { transaction, current in
                if current.isInvoiceBilled {
                    // Ours: the invoicing job ends it at the period's end instead of starting a new period.
                    _ = try await dropPendingChange(transaction, current)
                    try await applyLocally(current, transaction, actor: actor, action: atPeriodEnd ? "subscription.cancel_scheduled" : "subscription.canceled") {
                        if atPeriodEnd { $0.cancelAtPeriodEnd = true } else { $0.status = .canceled }
                    }
                    return nil
                }
                guard atPeriodEnd else {
                    return SubscriptionChangePlan(subscription: current.stripeSubscriptionID, steps: [.init(kind: .end, action: "subscription.canceled")])
                }
                // Ending sooner than a later cancel_at, so that one is replaced; an ending at or before the period's end
                // stands.
                if current.cancelAtPeriodEnd { return SubscriptionChangePlan(subscription: current.stripeSubscriptionID, steps: []) }
                if let at = current.cancelAt, let end = current.currentPeriodEnd, at <= end {
                    return SubscriptionChangePlan(subscription: current.stripeSubscriptionID, steps: [])
                }
                // Stripe takes no cancellation on a subscription a schedule governs: the schedule goes first.
                return SubscriptionChangePlan(
                    subscription: current.stripeSubscriptionID, releasing: current.scheduleID,
                    steps: [.init(kind: .cancelAtPeriodEnd, action: "subscription.cancel_scheduled", value: true)])
            },
            effects: { transaction, current, _, _ in try await dropPendingChange(transaction, current) })
        return try await status(of: call.tenantID)
    }

    /// `billing.resume`: undoes a scheduled cancellation before the period ends (not Stripe's resume of a pause).
    func resume(call: TenantCall) async throws -> BillingStatus {
        _ = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.resume")
        let actor = call.actor
        _ = try await changeSubscription(
            call, operation: "billing.resume", request: "resume", for: "resume",
            decide: { transaction, current in
                let pending = try await transaction.subscriptions.pendingChange()
                let scheduledDowngrade = current.scheduleID != nil && pending?.source == .schedule
                guard current.cancellationScheduled || scheduledDowngrade else {
                    throw BillingError.preconditionFailed("this subscription is not set to cancel; there is nothing to resume")
                }
                if let end = current.currentPeriodEnd, end <= now() {
                    throw BillingError.preconditionFailed(
                        "the period ended \(end.formatted(.iso8601)) and the subscription with it; subscribe again with billing.checkout")
                }
                if current.isInvoiceBilled {
                    try await applyLocally(current, transaction, actor: actor, action: "subscription.resumed") { $0.cancelAtPeriodEnd = false }
                    return nil
                }
                // However the ending was set: a schedule (the portal's downgrade or cancellation at the period's end) is
                // released, so the subscription goes on as it is; then a cancel_at, or the flag, is cleared.
                return SubscriptionChangePlan(
                    subscription: current.stripeSubscriptionID, releasing: current.scheduleID,
                    steps: [.init(kind: .clearEnding, action: "subscription.resumed")])
            },
            effects: { transaction, current, _, _ in
                // What a released schedule had pending goes with it, and a move to free was this cancellation: both are
                // undone with it.
                if let pending = try await transaction.subscriptions.pendingChange(),
                   pending.source == .schedule || (try? self.catalog.plan(named: pending.plan))?.isFree == true
                {
                    try await transaction.subscriptions.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: self.now())
                }
                return nil
            })
        return try await status(of: call.tenantID)
    }
}
