import BillingCore
import BillingStore
import Foundation
import StripeAPI

/// The tenant's Stripe customer: its details kept, its deletion ending what it paid for.
extension StripeEventProcessor {
    /// The object as Stripe has it now when a client is configured (an event may arrive long after a newer one), the
    /// event's copy otherwise; Stripe not answering leaves the event due.
    func current<Object: Sendable>(
        _ fromEvent: Object, id: String, _ read: (StripeClient, String) async throws -> Object
    ) async throws -> Object {
        guard let stripe else { return fromEvent }
        do {
            return try await read(stripe, id)
        } catch {
            throw RetryLater("could not read \(id) from Stripe: \(error)")
        }
    }

    /// `customer.updated`: the customer's default payment method (`invoice_settings.default_payment_method`), changed
    /// in the Customer Portal or the Dashboard, becomes the card this server charges; removed, there is none. The
    /// customer is read from Stripe when a client is configured: this server's own change of the default sends such an
    /// event too, and an older one processed late (in the same second, say) must not bring back the card it replaced.
    /// Without a client, a change recorded later is never replaced by an earlier one.
    func customerUpdated(_ event: Customer, _ context: EventContext) async throws -> EventDisposition {
        let customer = try await current(event, id: event.id) { try await $0.retrieveCustomer($1) }
        guard customer.deleted != true, let settings = customer.invoiceSettings else {
            return context.processed("\(customer.id) has no invoice settings")
        }
        let method = settings.defaultPaymentMethod?.id
        let current = try await context.transaction.tenantRow.defaultPaymentMethod()
        guard method != current else {
            return context.processed("the default payment method is \(method ?? "none") already")
        }
        // Read from Stripe, it is the state now (and never older than the event, whose time may run ahead of ours on
        // a test clock); from the event alone, as of the event.
        let asOf = stripe == nil ? context.created : max(context.created, now())
        guard try await context.transaction.tenantRow.setDefaultPaymentMethod(method, savedAt: asOf) else {
            return context.stale("a payment method change made later than this event is recorded already")
        }
        try await context.audit(
            method == nil ? "payment_method.removed" : "payment_method.default_changed",
            before: current.map { ["paymentMethod": $0] }, after: method.map { ["paymentMethod": $0, "customer": customer.id] })
        if method != nil {
            _ = try await context.transaction.invoices.rescheduleWaitingForCard(at: context.created)
        }
        return context.processed()
    }

    /// `customer.deleted`: the tenant loses the customer, and its live subscriptions with it end now.
    func customerDeleted(_ customer: Customer, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        let ended = try await transaction.subscriptions.live(customer: customer.id)
        for var subscription in ended {
            let previous = subscription
            let before = Self.auditFields(subscription)
            subscription.status = .canceled
            subscription.pastDueSince = nil
            subscription.lastEventAt = max(subscription.lastEventAt ?? context.created, context.created)
            try await transaction.subscriptions.update(subscription, now: now())
            try await context.audit("subscription.ended", before: before, after: Self.auditFields(subscription))
            try await notifier.subscriptionChanged(transaction, before: previous, after: subscription)
        }
        if try await transaction.tenantRow.unlinkCustomer(customer.id) {
            try await context.audit("customer.unlinked", before: ["customer": customer.id], after: ["customer": ""])
        }
        return context.processed(ended.isEmpty ? nil : "ended \(ended.count) subscription(s)")
    }
}
