import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

extension PlanChangeJob {
    /// The plan-change job: applies every pending downgrade whose effective time (the end of the period in which it
    /// was asked for) is within `lead` of `now`, without proration, so the renewal already bills the new price.
    /// Returns the tenants it changed. One tenant's failure (Stripe down) is logged and retried at the next run.
    public func run(now: Date, lead: Duration = .seconds(3600), logger: Logger) async throws -> [UUID] {
        guard let client = stripe.client else { return [] }
        let scans = SubscriptionScans(database: environment.database)
        let by = now.addingTimeInterval(Double(lead.components.seconds))
        var changed: [UUID] = []
        for tenant in try await scans.planChangesDue(by: by, limit: 200) {
            do {
                if try await applyPendingChange(tenant, by: by, now: now, client: client) { changed.append(tenant) }
            } catch {
                logger.warning("could not apply a pending plan change; the next run tries again", metadata: [
                    "tenant": "\(tenant)", "error": "\(error)",
                ])
            }
        }
        return changed
    }

    /// One tenant's due downgrade, in atomic phases like the methods' changes (one change per tenant at a time).
    func applyPendingChange(_ tenant: UUID, by: Date, now: Date, client: StripeClient) async throws -> Bool {
        let actor = AuditActor(kind: .system, id: "plan-change-job")
        return try await inAtomicPhases(
            tenant, .subscription, operation: "plan-change-job",
            decide: { transaction -> PhaseOne<SubscriptionChangePlan, Bool> in
                guard let current = try await transaction.subscriptions.current(), !current.isTerminal,
                      let pending = try await transaction.subscriptions.pendingChange(), let effective = pending.effectiveAt, effective <= by
                else { return .answered(false) }
                if let schedule = current.scheduleID {
                    // A Stripe schedule governs this subscription: its phases decide, and a change made over it would be
                    // undone by the next phase. The request is dropped, visibly.
                    try await transaction.subscriptions.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now)
                    try await transaction.audit.record(
                        actor: actor, action: "plan.change_left_to_schedule",
                        before: ["pendingPlan": pending.plan, "pendingInterval": pending.interval ?? ""],
                        after: ["schedule": schedule, "reason": "a Stripe schedule governs \(current.stripeSubscriptionID)"])
                    return .answered(false)
                }
                let target = try catalog.plan(named: pending.plan)
                let interval = pending.interval.flatMap(BillingInterval.init(rawValue:)) ?? .month
                guard !target.isFree, let priceID = try? catalog.stripePriceID(of: target, per: interval), !current.cancelAtPeriodEnd else {
                    // A move to free is the cancellation at the period's end (Stripe ends it), as is any scheduled one.
                    try await transaction.subscriptions.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now)
                    return .answered(false)
                }
                return .call(request: "\(target.key):\(interval.rawValue):at:\(Int(effective.timeIntervalSince1970))", plan: SubscriptionChangePlan(
                    subscription: current.stripeSubscriptionID, seen: Self.stamp(current), steps: [
                        .init(kind: .priceAtRenewal, action: "plan.downgraded", seats: target.seats.normalize(current.seats), price: priceID),
                    ]))
            },
            call: { plan, intent in try await self.run(plan, intent: intent, client: client) },
            record: { transaction, plan, _, confirmed, recorded in
                guard !recorded else { return true }
                try await self.record(confirmed, over: plan, transaction, actor: actor)
                try await transaction.subscriptions.setPendingChange(plan.subscription, plan: nil, interval: nil, now: now)
                return true
            },
            settle: { try await self.settleSubscriptionIntent($0, tenant: tenant, client: client) })
    }
}
