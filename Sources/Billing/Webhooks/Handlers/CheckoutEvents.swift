import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

/// Checkout Sessions: a paid session credits its top-up or links its subscription; a closed one ends its top-up.
extension StripeEventProcessor {
    /// `checkout.session.completed` and `checkout.session.async_payment_succeeded`: a paid top-up is credited; a
    /// subscription checkout links its subscription.
    func checkoutCompleted(_ session: CheckoutSession, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        try await transaction.checkout.markSessionComplete(session.id)
        if let customer = session.customer?.id, try await transaction.tenantRow.linkCustomerIfUnset(customer) {
            try await context.audit("customer.linked", before: nil, after: ["customer": customer, "session": session.id])
            context.scope.wakeUnresolved([customer])
        }
        switch session.mode {
        case "subscription":
            return try await linkSubscription(session, context)
        case "payment" where session.metadata?["purpose"] == "credit_topup":
            guard session.paymentStatus == "paid" else {
                return context.processed("top-up session \(session.id) is \(session.paymentStatus ?? "unpaid"); waiting for the payment")
            }
            guard let amount = session.amountTotal, let currency = session.currency else {
                return context.rejected("paid top-up session \(session.id) has no amount_total or currency")
            }
            return try await fulfilTopUp(
                id: session.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: session.id,
                paymentIntentID: session.paymentIntent?.id, amount: amount, currency: currency, context)
        case "setup":
            // The card itself arrives with setup_intent.succeeded; reading the SetupIntent here covers that event
            // arriving late (or being lost until reconciliation).
            guard let setupID = session.setupIntent?.id, let stripe else {
                return context.processed("the card is recorded by setup_intent.succeeded")
            }
            let intent: SetupIntent
            do {
                intent = try await stripe.retrieveSetupIntent(setupID)
            } catch {
                throw RetryLater("could not read \(setupID) from Stripe: \(error)")
            }
            guard intent.status == "succeeded" else { return context.processed("setup intent \(setupID) is \(intent.status)") }
            return try await setupSucceeded(intent, context)
        default:
            return context.ignored("checkout session \(session.id) in \(session.mode) mode needs nothing here")
        }
    }

    /// `setup_intent.succeeded`: the saved card becomes the tenant's default for the invoices this server charges
    /// (and the customer's default at Stripe). A card saved later is never replaced by an earlier one.
    func setupSucceeded(_ intent: SetupIntent, _ context: EventContext) async throws -> EventDisposition {
        guard let method = intent.paymentMethod?.id else {
            return context.rejected("setup intent \(intent.id) succeeded without a payment method")
        }
        let savedAt = Self.date(intent.created) ?? context.created
        if try await context.transaction.tenantRow.defaultPaymentMethod() == method {
            return context.processed("\(method) is recorded already")
        }
        guard try await context.transaction.tenantRow.setDefaultPaymentMethod(method, savedAt: savedAt) else {
            return context.stale("a card saved later than \(intent.id)'s is recorded already")
        }
        if let stripe, let customer = intent.customer?.id {
            do {
                _ = try await stripe.setDefaultPaymentMethod(
                    customer: customer, paymentMethod: method, idempotencyKey: "default-pm:\(customer):\(method)")
            } catch {
                throw RetryLater("could not make \(method) the default of \(customer) at Stripe: \(error)")
            }
        }
        try await context.audit("payment_method.saved", before: nil, after: ["paymentMethod": method, "setupIntent": intent.id])
        // Invoices that waited for a card are due now.
        _ = try await context.transaction.invoices.rescheduleWaitingForCard(at: context.created)
        return context.processed()
    }

    /// `checkout.session.expired` and `checkout.session.async_payment_failed`: the session's pending top-up is closed.
    func checkoutClosed(_ session: CheckoutSession, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        let expired = context.event.type == "checkout.session.expired"
        if expired {
            try await transaction.checkout.markSessionExpired(session.id)
        }
        guard let topUp = try await transaction.checkout.lockTopUp(id: nil, sessionID: session.id, paymentIntentID: nil) else {
            return context.processed()
        }
        guard topUp.status == "pending" else {
            return context.processed("top-up \(topUp.id) is \(topUp.status) already")
        }
        let status = expired ? "expired" : "failed"
        try await transaction.checkout.updateTopUp(
            topUp.id, status: status, lastFailure: expired ? nil : "the asynchronous payment failed")
        try await context.audit("topup.\(status)", before: ["topUp": topUp.id.lowercased, "status": topUp.status],
                                after: ["topUp": topUp.id.lowercased, "status": status])
        return context.processed()
    }
}
