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

extension BillingAPI {
    /// The tenant's live subscription, locked for the length of the change; PRECONDITION_FAILED saying what to do when
    /// there is none.
    func liveSubscription(_ transaction: TenantTransaction, for action: String) async throws -> SubscriptionRecord {
        guard try await transaction.tenantIsLive() else { throw Self.unknownTenant(transaction.tenant) }
        guard let current = try await transaction.currentSubscription(), !current.isTerminal else {
            throw BillingError.preconditionFailed(
                "this tenant has no subscription to \(action); subscribe first with billing.checkout")
        }
        return current
    }

    /// Stripe's answer to a change is its confirmation: it becomes our row at once (the change's own webhook, a
    /// moment later, finds it applied). The event time stays, so any newer event still applies.
    func applyConfirmed(
        _ subscription: Subscription, over current: SubscriptionRecord, _ transaction: TenantTransaction, actor: AuditActor, action: String
    ) async throws {
        guard case .success(var record) = catalog.subscriptionRecord(subscription, previous: current, at: nil) else {
            // Stripe answered with a price we do not know: leave it to the webhook, which fails visibly.
            return
        }
        record.lastEventAt = current.lastEventAt
        try await transaction.updateSubscription(record, now: now())
        try await transaction.audit(
            actor: actor, action: action,
            before: StripeEventProcessor.auditFields(current), after: StripeEventProcessor.auditFields(record))
        try await notifier.subscriptionChanged(transaction, before: current, after: record)
    }

    /// A change to a subscription this server bills by invoice: ours to make, audited and announced like Stripe's.
    func applyLocally(
        _ current: SubscriptionRecord, _ transaction: TenantTransaction, actor: AuditActor, action: String,
        _ change: (inout SubscriptionRecord) -> Void
    ) async throws {
        var record = current
        change(&record)
        try await transaction.updateSubscription(record, now: now())
        try await transaction.audit(
            actor: actor, action: action, before: StripeEventProcessor.auditFields(current), after: StripeEventProcessor.auditFields(record))
        try await notifier.subscriptionChanged(transaction, before: current, after: record)
    }

    /// `billing.updateSeats`: checked against the plan's seat range, then the Stripe item's quantity, with proration.
    func updateSeats(_ params: SeatsParams, call: TenantCall) async throws -> BillingStatus {
        let client = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.updateSeats")
        let actor = call.actor
        let proration = settings.seatProration
        let waiting = try await tenants.database.transaction(call.tenantID, operation: "update seats") { transaction -> SubscriptionRecord? in
            let current = try await liveSubscription(transaction, for: "change seats on")
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
            let item = try await subscriptionItem(current.stripeSubscriptionID, client: client)
            let updated = try await client.updateSubscription(
                current.stripeSubscriptionID,
                Self.itemChange(["id": .string(item), "quantity": .int(params.seats)], charging: params.seats > current.seats, otherwise: proration),
                idempotencyKey: "seats:\(current.stripeSubscriptionID):\(current.seats)->\(params.seats):\(Self.stamp(current))")
            try await applyConfirmed(updated, over: current, transaction, actor: actor, action: "subscription.seats_changed")
            return updated.pendingUpdate == nil ? nil : try await transaction.currentSubscription()
        }
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
        let client = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.cancel")
        let actor = call.actor
        try await tenants.database.transaction(call.tenantID, operation: "cancel") { transaction in
            let current = try await liveSubscription(transaction, for: "cancel")
            // A cancellation replaces any plan change scheduled for the period's end.
            if let pending = try await transaction.pendingChange(), !(try catalog.plan(named: pending.plan)).isFree {
                try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
            }
            if current.isInvoiceBilled {
                // Ours: the invoicing job ends it at the period's end instead of starting a new period.
                try await applyLocally(current, transaction, actor: actor, action: atPeriodEnd ? "subscription.cancel_scheduled" : "subscription.canceled") {
                    if atPeriodEnd { $0.cancelAtPeriodEnd = true } else { $0.status = "canceled" }
                }
                return
            }
            if atPeriodEnd {
                // Ending sooner than a later cancel_at, so that one is replaced; an ending at or before the period's
                // end stands.
                if current.cancelAtPeriodEnd { return }
                if let at = current.cancelAt, let end = current.currentPeriodEnd, at <= end { return }
                // Stripe takes no cancellation on a subscription a schedule governs: the schedule goes first.
                let unscheduled = try await releaseSchedule(of: current, transaction, client: client, actor: actor)
                let updated = try await client.updateSubscription(
                    unscheduled.stripeSubscriptionID, ["cancel_at_period_end": true],
                    idempotencyKey: "cancel:\(unscheduled.stripeSubscriptionID):\(Self.stamp(unscheduled))")
                try await applyConfirmed(updated, over: unscheduled, transaction, actor: actor, action: "subscription.cancel_scheduled")
            } else {
                let ended = try await client.endSubscription(current.stripeSubscriptionID)
                try await applyConfirmed(ended, over: current, transaction, actor: actor, action: "subscription.canceled")
            }
        }
        return try await status(of: call.tenantID)
    }

    /// `billing.resume`: undoes a scheduled cancellation before the period ends (not Stripe's resume of a pause).
    func resume(call: TenantCall) async throws -> BillingStatus {
        let client = try requireStripe()
        try await spendRateToken(settings.rateLimits.changes, tenant: call.tenantID, method: "billing.resume")
        let actor = call.actor
        try await tenants.database.transaction(call.tenantID, operation: "resume") { transaction in
            var current = try await liveSubscription(transaction, for: "resume")
            let pending = try await transaction.pendingChange()
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
                return
            }
            // However the ending was set: a schedule (the portal's downgrade or cancellation at the period's end) is
            // released, so the subscription goes on as it is; then a cancel_at, or the flag, is cleared.
            current = try await releaseSchedule(of: current, transaction, client: client, actor: actor)
            if current.cancellationScheduled {
                let clear: FormParameters = current.cancelAtPeriodEnd ? ["cancel_at_period_end": false] : ["cancel_at": ""]
                let updated = try await client.updateSubscription(
                    current.stripeSubscriptionID, clear, idempotencyKey: "resume:\(current.stripeSubscriptionID):\(Self.stamp(current))")
                try await applyConfirmed(updated, over: current, transaction, actor: actor, action: "subscription.resumed")
            }
            // A move to free was this cancellation: it is undone with it.
            if let pending = try await transaction.pendingChange(), (try? catalog.plan(named: pending.plan))?.isFree == true {
                try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
            }
        }
        return try await status(of: call.tenantID)
    }

    /// A Stripe schedule governing the subscription (the portal's downgrade, an ending set in the Dashboard) is
    /// released before a change made here, which its next phase would otherwise undo; the subscription goes on as it
    /// is, and the change the schedule had pending goes with it. A schedule no longer in force at Stripe (released or
    /// ended there, its webhook not here yet) is let be. Returns the subscription as it is then.
    func releaseSchedule(
        of current: SubscriptionRecord, _ transaction: TenantTransaction, client: StripeClient, actor: AuditActor
    ) async throws -> SubscriptionRecord {
        guard let schedule = current.scheduleID else { return current }
        try await client.releaseScheduleInForce(schedule)
        if try await transaction.pendingChange()?.source == .schedule {
            try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: now())
        }
        let released = try await client.retrieveSubscription(current.stripeSubscriptionID)
        try await applyConfirmed(released, over: current, transaction, actor: actor, action: "subscription.schedule_released")
        return try await transaction.currentSubscription() ?? current
    }

    /// A change that costs more while an earlier one still waits for its payment would charge twice for one period:
    /// refused until that invoice is paid or the earlier change lapses.
    func refuseWhileUpgradeUnpaid(_ current: SubscriptionRecord) throws {
        if let expires = current.pendingUpdateExpiresAt, expires > now() {
            throw Self.upgradeNotPaid(current, what: "the earlier change")
        }
    }

    /// The parameters of an item change. One that costs more (an upgrade, more seats) is invoiced and charged at
    /// once, and applies only once that invoice is paid (`pending_if_incomplete`): a failed payment leaves the
    /// subscription as it was. Anything else prorates as `BILLING_PRORATION_BEHAVIOR` says.
    static func itemChange(_ item: FormValue, charging: Bool, otherwise proration: String) -> FormParameters {
        charging
            ? ["items": [item], "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete"]
            : ["items": [item], "proration_behavior": .string(proration)]
    }

    /// The answer to an upgrade whose payment did not go through: the subscription stays as it was until the invoice
    /// is paid (in the portal, or by Stripe's retries) or the change lapses.
    static func upgradeNotPaid(_ record: SubscriptionRecord, what: String) -> BillingError {
        let until = record.pendingUpdateExpiresAt?.formatted(.iso8601) ?? "it lapses"
        return BillingError.paymentRequired(
            "the payment for \(what) did not go through, so the subscription stays on \(record.seats) seat(s) of '\(record.plan)'; pay the open invoice in the portal (billing.portal) before \(until), or try another card",
            data: ["pendingUpdateExpiresAt": record.pendingUpdateExpiresAt.map { .string($0.formatted(.iso8601)) } ?? .null])
    }

    func subscriptionItem(_ subscriptionID: String, client: StripeClient) async throws -> String {
        let subscription = try await client.retrieveSubscription(subscriptionID)
        guard let item = subscription.items.data.first else {
            throw StripeError.unreadable("subscription \(subscriptionID) has no items")
        }
        return item.id
    }

    /// Part of a change's idempotency key: the state it was made from, so a retry of the same change is the same
    /// Stripe request and a change after the state moved is a new one.
    static func stamp(_ record: SubscriptionRecord) -> String {
        "\(record.seats):\(record.plan):\(record.interval):\(record.cancelAtPeriodEnd):\(Int64((record.updatedAt?.timeIntervalSince1970 ?? 0) * 1_000_000))"
    }
}
