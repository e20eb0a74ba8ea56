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
        guard case .success(var record) = catalog.subscriptionRecord(subscription, previous: current, at: nil, now: now()) else {
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
                confirmed?.pendingUpdate == nil ? nil : try await transaction.currentSubscription()
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
            if let pending = try await transaction.pendingChange(),
               pending.source == .schedule || (try? self.catalog.plan(named: pending.plan))?.isFree != true
            {
                try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: self.now())
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
                        if atPeriodEnd { $0.cancelAtPeriodEnd = true } else { $0.status = "canceled" }
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
                if let pending = try await transaction.pendingChange(),
                   pending.source == .schedule || (try? self.catalog.plan(named: pending.plan))?.isFree == true
                {
                    try await transaction.setPendingChange(current.stripeSubscriptionID, plan: nil, interval: nil, now: self.now())
                }
                return nil
            })
        return try await status(of: call.tenantID)
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

    /// The subscription row as a change's first phase saw it: its last phase writes Stripe's answers only over that same
    /// row (`record(_:over:)`).
    static func stamp(_ record: SubscriptionRecord) -> String {
        "\(record.seats):\(record.plan):\(record.interval):\(record.cancelAtPeriodEnd):\(Int64((record.updatedAt?.timeIntervalSince1970 ?? 0) * 1_000_000))"
    }
}
