import BillingCore
import BillingStore
import Foundation
import StripeAPI

/// Why Stripe's object cannot become our row.
struct Unusable: Error, CustomStringConvertible {
    var description: String
}

extension PlanCatalog {
    /// Stripe's subscription as our row: the price mapped back through the catalog (an unknown price fails the
    /// event, never downgrades silently), seats brought into the plan's range, since when it is past due.
    func subscriptionRecord(
        _ subscription: Subscription, previous: SubscriptionRecord?, at created: Date?, now: Date
    ) -> Result<SubscriptionRecord, Unusable> {
        guard let item = subscription.items.data.first, let priceID = item.priceID else {
            return .failure(Unusable(description: "subscription \(subscription.id) has no item with a price"))
        }
        guard let (plan, interval) = try? plan(forStripePrice: priceID) else {
            return .failure(Unusable(description:
                "subscription \(subscription.id) has price \(priceID), which is not in the plan catalog; add it (plans file or STRIPE_PRICE_<PLAN>_<INTERVAL>) and replay with `billingd events retry`"))
        }
        guard let status = SubscriptionStatus(rawValue: subscription.status) else {
            return .failure(Unusable(description: "subscription \(subscription.id) has status '\(subscription.status)', which this server does not know"))
        }
        let pastDueSince: Date? = status == .pastDue
            ? (previous?.status == .pastDue ? previous?.pastDueSince : nil) ?? created ?? now
            : nil
        var record = SubscriptionRecord(
            stripeSubscriptionID: subscription.id, stripeCustomerID: subscription.customer?.id ?? previous?.stripeCustomerID,
            stripePriceID: priceID, plan: plan.key, interval: interval.rawValue, seats: plan.seats.normalize(item.quantity),
            status: status, pastDueSince: pastDueSince, currentPeriodEnd: subscription.periodEnd.map { Date(timeIntervalSince1970: Double($0)) },
            cancelAtPeriodEnd: subscription.cancelAtPeriodEnd ?? false, isCurrent: previous?.isCurrent ?? true,
            lastEventAt: created ?? previous?.lastEventAt,
            stripeCreatedAt: subscription.created.map { Date(timeIntervalSince1970: Double($0)) } ?? previous?.stripeCreatedAt)
        record.cancelAt = subscription.cancelAt.map { Date(timeIntervalSince1970: Double($0)) }
        record.scheduleID = subscription.schedule?.id
        record.pendingUpdateExpiresAt = subscription.pendingUpdate.map { Date(timeIntervalSince1970: Double($0.expiresAt)) }
        return .success(record)
    }
}
