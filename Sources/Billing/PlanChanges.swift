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

extension BillingAPI {
    /// `billing.changePlan`: an upgrade applies now with proration; a downgrade waits for the period's end (kept as
    /// the pending change, applied then by the plan-change job without proration); a move to a plan that is never
    /// bought (free) cancels at the period's end. Team seats are carried over within the new plan's range.
    func changePlan(_ params: ChangePlanParams, call: TenantCall) async throws -> BillingStatus {
        let target = try catalog.plan(named: params.plan)
        let client = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.changePlan")
        let actor = call.actor
        let proration = settings.seatProration
        let waiting = try await tenants.database.transaction(call.tenantID, operation: "change plan") { transaction -> SubscriptionRecord? in
            var current = try await liveSubscription(transaction, for: "change")
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
            // A choice made here replaces whatever a Stripe schedule had planned.
            current = try await releaseSchedule(of: current, transaction, client: client, actor: actor)
            let pending = try await transaction.pendingChange()
            let before = ["plan": current.plan, "interval": current.interval, "pendingPlan": pending?.plan ?? ""]
            // A plan nothing is paid for: leave at the period's end.
            if target.isFree {
                if !current.cancelAtPeriodEnd {
                    let updated = try await client.updateSubscription(
                        current.stripeSubscriptionID, ["cancel_at_period_end": true],
                        idempotencyKey: "cancel:\(current.stripeSubscriptionID):\(Self.stamp(current))")
                    try await applyConfirmed(updated, over: current, transaction, actor: actor, action: "subscription.cancel_scheduled")
                }
                try await transaction.setPendingChange(
                    current.stripeSubscriptionID, plan: target.key, interval: nil, effectiveAt: current.currentPeriodEnd, now: now())
                try await transaction.audit(actor: actor, action: "plan.change_scheduled", before: before,
                                            after: ["plan": current.plan, "pendingPlan": target.key, "effectiveAt": Self.iso(current.currentPeriodEnd)])
                return nil
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
                let updated = try await client.updateSubscription(
                    current.stripeSubscriptionID, ["cancel_at_period_end": false],
                    idempotencyKey: "resume:\(current.stripeSubscriptionID):\(Self.stamp(current))")
                try await applyConfirmed(updated, over: current, transaction, actor: actor, action: "subscription.resumed")
                guard let refreshed = try await transaction.currentSubscription() else { return nil }
                current = refreshed
            }
            switch PlanChangeDirection(from: currentPlan, currentInterval, to: target, interval) {
            case .same:
                // Changing back to what it is: a scheduled change is dropped.
                if pending != nil {
                    try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
                    try await transaction.audit(actor: actor, action: "plan.change_dropped", before: before,
                                                after: ["plan": current.plan, "interval": current.interval, "pendingPlan": ""])
                }
            case .upgrade:
                try refuseWhileUpgradeUnpaid(current)
                let seats = target.seats.normalize(current.seats)
                let item = try await subscriptionItem(current.stripeSubscriptionID, client: client)
                let updated = try await client.updateSubscription(
                    current.stripeSubscriptionID,
                    Self.itemChange(["id": .string(item), "price": .string(priceID), "quantity": .int(seats)], charging: true, otherwise: proration),
                    idempotencyKey: "plan:\(current.stripeSubscriptionID):\(target.key):\(interval.rawValue):\(Self.stamp(current))")
                if updated.pendingUpdate == nil {
                    try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
                }
                try await applyConfirmed(updated, over: current, transaction, actor: actor, action: "plan.upgraded")
                if updated.pendingUpdate != nil { return try await transaction.currentSubscription() }
            case .downgrade:
                try await transaction.setPendingChange(
                    current.stripeSubscriptionID, plan: target.key, interval: interval.rawValue, effectiveAt: current.currentPeriodEnd,
                    now: now())
                try await transaction.audit(actor: actor, action: "plan.change_scheduled", before: before, after: [
                    "plan": current.plan, "pendingPlan": target.key, "pendingInterval": interval.rawValue,
                    "effectiveAt": Self.iso(current.currentPeriodEnd),
                ])
            }
            return nil
        }
        if let waiting { throw Self.upgradeNotPaid(waiting, what: "the change to '\(target.key)'") }
        return try await status(of: call.tenantID)
    }

    static func iso(_ date: Date?) -> String { date?.formatted(.iso8601) ?? "" }

    /// The plan-change job: applies every pending downgrade whose effective time (the end of the period in which it
    /// was asked for) is within `lead` of `now`, without proration, so the renewal already bills the new price.
    /// Returns the tenants it changed. One tenant's failure (Stripe down) is logged and retried at the next run.
    public func applyDuePlanChanges(now: Date, lead: Duration = .seconds(3600), logger: Logger) async throws -> [UUID] {
        guard let client = stripe.client else { return [] }
        let inbox = EventInbox(database: tenants.database)
        let by = now.addingTimeInterval(Double(lead.components.seconds))
        var changed: [UUID] = []
        for tenant in try await inbox.planChangesDue(by: by, limit: 200) {
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

    func applyPendingChange(_ tenant: UUID, by: Date, now: Date, client: StripeClient) async throws -> Bool {
        try await tenants.database.transaction(tenant, operation: "apply plan change") { transaction in
            guard let current = try await transaction.currentSubscription(), !current.isTerminal,
                  let pending = try await transaction.pendingChange(), let effective = pending.effectiveAt, effective <= by
            else { return false }
            if let schedule = current.scheduleID {
                // A Stripe schedule governs this subscription: its phases decide, and a change made over it would be
                // undone by the next phase. The request is dropped, visibly.
                try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now)
                try await transaction.audit(
                    actor: AuditActor(kind: .system, id: "plan-change-job"), action: "plan.change_left_to_schedule",
                    before: ["pendingPlan": pending.plan, "pendingInterval": pending.interval ?? ""],
                    after: ["schedule": schedule, "reason": "a Stripe subscription schedule governs \(current.stripeSubscriptionID)"])
                return false
            }
            let target = try catalog.plan(named: pending.plan)
            let interval = pending.interval.flatMap(BillingInterval.init(rawValue:)) ?? .month
            guard !target.isFree, let priceID = try? catalog.stripePriceID(of: target, per: interval), !current.cancelAtPeriodEnd else {
                // A move to free is the cancellation at the period's end (Stripe ends it), as is any scheduled one.
                try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now)
                return false
            }
            let item = try await subscriptionItem(current.stripeSubscriptionID, client: client)
            let updated = try await client.updateSubscription(current.stripeSubscriptionID, [
                "items": [["id": .string(item), "price": .string(priceID), "quantity": .int(target.seats.normalize(current.seats))]],
                "proration_behavior": "none",
            ], idempotencyKey: "plan:\(current.stripeSubscriptionID):\(target.key):\(interval.rawValue):at:\(Int(effective.timeIntervalSince1970))")
            try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now)
            try await applyConfirmed(updated, over: current, transaction, actor: AuditActor(kind: .system, id: "plan-change-job"),
                                     action: "plan.downgraded")
            return true
        }
    }

    /// The grace job: announces (entitlement.changed) every past-due subscription whose grace period has run out,
    /// once; nothing in the row changes then, so no webhook would. Returns the tenants it announced.
    public func announceEndedGracePeriods(now: Date, logger: Logger) async throws -> [UUID] {
        guard notifier.enabled else { return [] }
        let inbox = EventInbox(database: tenants.database)
        let since = now.addingTimeInterval(-Double(settings.pastDueGrace.components.seconds))
        var announced: [UUID] = []
        for tenant in try await inbox.gracePeriodsEnded(since: since, limit: 500) {
            let done = try await tenants.database.transaction(tenant, operation: "announce grace end") { transaction -> Bool in
                guard let record = try await transaction.markGraceNotified(pastDueSince: since, now: now) else { return false }
                try await notifier.emit(transaction, "entitlement.changed", [
                    "entitled": false, "plan": .string(record.plan), "status": .string(record.status),
                    "graceEndedAt": .string(record.pastDueSince.map { $0.addingTimeInterval(Double(settings.pastDueGrace.components.seconds)) }?.formatted(.iso8601) ?? ""),
                ], now: now)
                return true
            }
            if done { announced.append(tenant) }
        }
        return announced
    }
}
