import BillingCore
import BillingStore
import Foundation
import StripeAPI

/// What the subscription changes (`billing.updateSeats`, `changePlan`, `cancel`, `resume`), the tenant deletion and
/// the plan-change job share.
extension BillingService {
    /// The tenant's live subscription, locked for the length of the change; PRECONDITION_FAILED saying what to do when
    /// there is none.
    func liveSubscription(_ transaction: TenantTransaction, for action: String) async throws -> SubscriptionRecord {
        guard try await transaction.tenantRow.isLive() else { throw Self.unknownTenant(transaction.tenant) }
        guard let current = try await transaction.subscriptions.current(), !current.isTerminal else {
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
        try await transaction.subscriptions.update(record, now: now())
        try await transaction.audit.record(
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
        try await transaction.subscriptions.update(record, now: now())
        try await transaction.audit.record(
            actor: actor, action: action, before: StripeEventProcessor.auditFields(current), after: StripeEventProcessor.auditFields(record))
        try await notifier.subscriptionChanged(transaction, before: current, after: record)
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
