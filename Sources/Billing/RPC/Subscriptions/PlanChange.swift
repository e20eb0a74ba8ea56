import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

public struct ChangePlanParams: Decodable, Sendable {
    public var plan: String
    public var interval: String?
}

extension SubscriptionService {
    /// `billing.changePlan`: an upgrade applies now with proration; a downgrade waits for the period's end (kept as
    /// the pending change, applied then by the plan-change job without proration); a move to a plan that is never
    /// bought (free) cancels at the period's end. Team seats are carried over within the new plan's range.
    func changePlan(_ params: ChangePlanParams, call: TenantCall) async throws -> BillingStatus {
        let target = try catalog.plan(named: params.plan)
        _ = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.changePlan")
        let actor = call.actor
        let waiting = try await changeSubscription(
            call, operation: "billing.changePlan", request: "plan=\(target.key) interval=\(params.interval ?? "")", for: "change",
            decide: { transaction, current in
                if current.isInvoiceBilled || target.billing == .invoice {
                    throw BillingError.preconditionFailed(
                        "moving between invoice billing and Stripe subscriptions is not a plan change: cancel (billing.cancel), then subscribe with billing.checkout or billing.subscribeByInvoice")
                }
                let currentPlan = try catalog.plan(named: current.plan)
                let currentInterval = BillingInterval(rawValue: current.interval) ?? .month
                let interval = try params.interval.map { try parseInterval($0) }
                    ?? (target.price(for: currentInterval) != nil ? currentInterval : target.intervals.first ?? .month)
                guard target.price(for: interval) != nil else {
                    throw BillingError.invalidParams(
                        field: "interval", "plan '\(target.key)' is offered \(target.intervals.map(\.rawValue).joined(separator: " or ")), not \(interval.rawValue)")
                }
                // A choice made here replaces whatever a Stripe schedule had planned (released first, in the Stripe phase).
                var plan = SubscriptionChangePlan(subscription: current.stripeSubscriptionID, releasing: current.scheduleID, steps: [])
                let pending = try await transaction.subscriptions.pendingChange().flatMap { $0.source == .schedule && current.scheduleID != nil ? nil : $0 }
                // A plan nothing is paid for: leave at the period's end.
                if target.isFree {
                    if !current.cancelAtPeriodEnd {
                        plan.steps.append(.init(kind: .cancelAtPeriodEnd, action: "subscription.cancel_scheduled", value: true))
                    }
                    plan.effect = .schedule(plan: target.key, interval: nil)
                    return plan
                }
                let priceID: String
                do {
                    priceID = try catalog.stripePriceID(of: target, per: interval)
                } catch {
                    throw BillingError.preconditionFailed(
                        "plan '\(target.key)' has no Stripe price configured for \(interval.rawValue) on this server; set STRIPE_PRICE_\(target.key.uppercased())_\(interval.rawValue.uppercased())")
                }
                // Choosing a paid plan again after asking to leave for free undoes that cancellation.
                if let pending, (try? catalog.plan(named: pending.plan))?.isFree == true, current.cancelAtPeriodEnd {
                    plan.steps.append(.init(kind: .cancelAtPeriodEnd, action: "subscription.resumed", value: false))
                }
                switch PlanChangeDirection(from: currentPlan, currentInterval, to: target, interval) {
                case .same:
                    // Changing back to what it is: a scheduled change is dropped.
                    plan.effect = pending == nil ? nil : .drop
                case .upgrade:
                    try refuseWhileUpgradeUnpaid(current)
                    plan.steps.append(.init(kind: .price, action: "plan.upgraded", seats: target.seats.normalize(current.seats), price: priceID))
                    plan.effect = .upgraded
                case .downgrade:
                    plan.effect = .schedule(plan: target.key, interval: interval.rawValue)
                }
                return plan
            },
            effects: { transaction, current, plan, confirmed in
                try await self.planChangeEffects(plan.effect, transaction, current, confirmed: confirmed, actor: actor)
            })
        if let waiting { throw Self.upgradeNotPaid(waiting, what: "the change to '\(target.key)'") }
        return try await status(of: call.tenantID)
    }

    /// What a plan change writes once Stripe has confirmed its steps (or at once, when it needed none): the pending
    /// change it schedules, drops, or that an upgrade settled.
    /// Returns the subscription when the upgrade waits for its payment.
    func planChangeEffects(
        _ effect: SubscriptionChangePlan.Effect?, _ transaction: TenantTransaction, _ current: SubscriptionRecord, confirmed: Subscription?, actor: AuditActor
    ) async throws -> SubscriptionRecord? {
        let pending = try await transaction.subscriptions.pendingChange()
        let before = ["plan": current.plan, "interval": current.interval, "pendingPlan": pending?.plan ?? ""]
        if pending?.source == .schedule, confirmed != nil {
            // The released schedule's pending change went with it.
            try await transaction.subscriptions.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
        }
        switch effect {
        case .schedule(let plan, let interval):
            try await transaction.subscriptions.setPendingChange(
                current.stripeSubscriptionID, plan: plan, interval: interval, effectiveAt: current.currentPeriodEnd, now: now())
            var after = ["plan": current.plan, "pendingPlan": plan, "effectiveAt": Self.iso(current.currentPeriodEnd)]
            if let interval { after["pendingInterval"] = interval }
            try await transaction.audit.record(actor: actor, action: "plan.change_scheduled", before: before, after: after)
        case .drop:
            try await transaction.subscriptions.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
            try await transaction.audit.record(actor: actor, action: "plan.change_dropped", before: before,
                                        after: ["plan": current.plan, "interval": current.interval, "pendingPlan": ""])
        case .upgraded:
            if confirmed?.pendingUpdate != nil { return try await transaction.subscriptions.current() }
            try await transaction.subscriptions.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
        case nil:
            break
        }
        return nil
    }

    static func iso(_ date: Date?) -> String { date?.formatted(.iso8601) ?? "" }
}
