import BillingCore
import BillingStore
import Foundation
import StripeAPI

extension StripeEventProcessor {
    /// `customer.subscription.*`: Stripe's object becomes our row, unless a newer event was applied already. When two
    /// events share a timestamp the current object is read from Stripe; a canceled subscription is never revived.
    func subscriptionChanged(_ object: Subscription, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        // The tenant before the subscription (the order the management paths lock them in), held so that a
        // deletion running now is waited for and seen.
        let tenantIsLive = try await transaction.tenantRow.holdIfLive()
        let existing = try await transaction.subscriptions.lock(object.id)
        var subscription = object
        // An ending is final in Stripe: it applies whatever arrived before it, and nothing applies after it.
        let ends = SubscriptionStatus.isTerminal(object.status)
        if let existing, existing.isTerminal {
            return context.stale("\(object.id) is \(existing.status); a later event does not revive it")
        }
        // Nothing may bill a deleted tenant, whatever this event says (its time, its price).
        if !ends, !tenantIsLive {
            return try await endForDeletedTenant(object.id, existing: existing, context)
        }
        if let existing {
            if !ends, let last = existing.lastEventAt {
                if context.created < last {
                    return context.stale("an event of \(last) about \(object.id) was applied already")
                }
                if context.created == last {
                    subscription = try await currentSubscription(object.id)
                }
            }
        }
        var record: SubscriptionRecord
        switch catalog.subscriptionRecord(subscription, previous: existing, at: context.created, now: now()) {
        case .success(let built): record = built
        case .failure(let reason): return context.rejected(reason.description)
        }
        record.lastEventAt = max(existing?.lastEventAt ?? context.created, context.created)
        if let existing {
            try await transaction.subscriptions.update(record, now: now())
            if Self.auditFields(existing) != Self.auditFields(record) {
                try await context.audit(
                    "subscription.updated", before: Self.auditFields(existing), after: Self.auditFields(record))
                try await notifier.subscriptionChanged(transaction, before: existing, after: record)
            }
        } else {
            guard try await transaction.subscriptions.insert(record, now: now()) else {
                throw RetryLater("another event inserted \(object.id) at the same moment")
            }
            try await context.audit("subscription.created", before: nil, after: Self.auditFields(record))
            try await notifier.subscriptionChanged(transaction, before: nil, after: record)
            context.scope.wakeUnresolved([record.stripeSubscriptionID, record.stripeCustomerID])
        }
        return context.processed()
    }

    /// Nothing may bill a deleted tenant: a Stripe subscription that comes alive for one after `tenants.delete` (made
    /// in Stripe's dashboard, through a Checkout this server never opened, or while the deletion ran) is canceled at
    /// Stripe at once, and its row says so; the product is told it ended. Stripe not answering leaves the event due,
    /// so it is tried again rather than forgotten.
    func endForDeletedTenant(_ id: String, existing: SubscriptionRecord?, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        guard let stripe else {
            throw RetryLater(
                "the tenant is deleted and \(id) must be canceled at Stripe: set STRIPE_SECRET_KEY for the worker, or cancel it in Stripe's dashboard, then replay this event with `billingd events retry`")
        }
        let ended: Subscription
        do {
            ended = try await stripe.endSubscription(id)
        } catch {
            throw RetryLater(
                "the tenant is deleted and \(id) could not be canceled at Stripe (\(error)); it is tried again, or cancel it in Stripe's dashboard and replay this event with `billingd events retry`")
        }
        let reason = ["reason": "the tenant is deleted"]
        // Stripe's answer as a row; with a price the catalog does not know, what is known of the row.
        let confirmed: SubscriptionRecord? = switch catalog.subscriptionRecord(ended, previous: existing, at: context.created, now: now()) {
        case .success(let record): record
        case .failure: existing
        }
        if var canceled = confirmed {
            if !canceled.isTerminal { canceled.status = .canceled }
            canceled.lastEventAt = max(existing?.lastEventAt ?? context.created, context.created)
            if let existing {
                try await transaction.subscriptions.update(canceled, now: now())
                try await notifier.subscriptionChanged(transaction, before: existing, after: canceled)
            } else if try await !transaction.subscriptions.insert(canceled, now: now()) {
                throw RetryLater("another event inserted \(id) at the same moment")
            }
            try await context.audit(
                "subscription.canceled", before: existing.map(Self.auditFields), after: Self.auditFields(canceled).merging(reason) { $1 })
        } else {
            try await context.audit("subscription.canceled", before: nil, after: ["subscription": id].merging(reason) { $1 })
        }
        logger.notice("a subscription came alive for a deleted tenant; canceled at Stripe", metadata: [
            "tenant": "\(context.tenant)", "subscription": "\(id)",
        ])
        return context.processed("the tenant is deleted: \(id) was canceled at Stripe")
    }

    /// `checkout.session.completed` in subscription mode: links the subscription to the tenant. Its state comes
    /// from the subscription's own events; until one arrives, the row says what was bought.
    func linkSubscription(_ session: CheckoutSession, _ context: EventContext) async throws -> EventDisposition {
        guard let subscriptionID = session.subscription?.id else {
            return context.rejected("checkout session \(session.id) in subscription mode has no subscription")
        }
        let tenantIsLive = try await context.transaction.tenantRow.holdIfLive()
        if try await context.transaction.subscriptions.lock(subscriptionID) != nil {
            return context.processed("subscription \(subscriptionID) was already known")
        }
        if !tenantIsLive {
            return try await endForDeletedTenant(subscriptionID, existing: nil, context)
        }
        let record: SubscriptionRecord
        if let planName = session.metadata?["plan"], let plan = try? catalog.plan(named: planName) {
            let interval = session.metadata?["interval"].flatMap(BillingInterval.init(rawValue:)) ?? .month
            record = SubscriptionRecord(
                stripeSubscriptionID: subscriptionID, stripeCustomerID: session.customer?.id,
                stripePriceID: try? catalog.stripePriceID(of: plan, per: interval), plan: plan.key, interval: interval.rawValue,
                seats: plan.seats.normalize(session.metadata?["seats"].flatMap { Int($0) }),
                status: session.paymentStatus == "paid" ? .active : (plan.trialDays > 0 ? .trialing : .incomplete),
                pastDueSince: nil, currentPeriodEnd: nil, cancelAtPeriodEnd: false, lastEventAt: nil,
                stripeCreatedAt: context.created)
        } else {
            switch catalog.subscriptionRecord(try await currentSubscription(subscriptionID), previous: nil, at: nil, now: now()) {
            case .success(let built): record = built
            case .failure(let reason): return context.rejected(reason.description)
            }
        }
        guard try await context.transaction.subscriptions.insert(record, now: now()) else {
            throw RetryLater("another event inserted \(subscriptionID) at the same moment")
        }
        try await context.audit("subscription.linked", before: nil, after: Self.auditFields(record).merging(["session": session.id]) { $1 })
        try await notifier.subscriptionChanged(context.transaction, before: nil, after: record)
        context.scope.wakeUnresolved([subscriptionID, session.customer?.id])
        return context.processed()
    }

    func currentSubscription(_ id: String) async throws -> Subscription {
        guard let stripe else {
            throw RetryLater("events about \(id) share a timestamp and Stripe is not configured to read its current state")
        }
        do {
            return try await stripe.retrieveSubscription(id)
        } catch {
            throw RetryLater("could not read \(id) from Stripe: \(error)")
        }
    }

    static func auditFields(_ record: SubscriptionRecord) -> [String: String] {
        var fields = [
            "subscription": record.stripeSubscriptionID, "plan": record.plan, "interval": record.interval,
            "seats": String(record.seats), "status": record.status.rawValue, "cancelAtPeriodEnd": String(record.cancelAtPeriodEnd),
        ]
        if let end = record.currentPeriodEnd { fields["currentPeriodEnd"] = end.formatted(.iso8601) }
        if let since = record.pastDueSince { fields["pastDueSince"] = since.formatted(.iso8601) }
        if let cancelAt = record.cancelAt { fields["cancelAt"] = cancelAt.formatted(.iso8601) }
        if let schedule = record.scheduleID { fields["schedule"] = schedule }
        if let expires = record.pendingUpdateExpiresAt { fields["pendingUpdateExpiresAt"] = expires.formatted(.iso8601) }
        return fields
    }
}
