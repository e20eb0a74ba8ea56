import BillingStore
import Foundation
import StripeAPI

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

    // MARK: Payment methods

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
        let current = try await context.transaction.defaultPaymentMethod()
        guard method != current else {
            return context.processed("the default payment method is \(method ?? "none") already")
        }
        // Read from Stripe, it is the state now (and never older than the event, whose time may run ahead of ours on
        // a test clock); from the event alone, as of the event.
        let asOf = stripe == nil ? context.created : max(context.created, now())
        guard try await context.transaction.setDefaultPaymentMethod(method, savedAt: asOf) else {
            return context.stale("a payment method change made later than this event is recorded already")
        }
        try await context.audit(
            method == nil ? "payment_method.removed" : "payment_method.default_changed",
            before: current.map { ["paymentMethod": $0] }, after: method.map { ["paymentMethod": $0, "customer": customer.id] })
        if method != nil {
            _ = try await context.transaction.rescheduleInvoicesWaitingForCard(at: context.created)
        }
        return context.processed()
    }

    /// `payment_method.detached`: a card removed (in the portal, say) is never charged again here.
    func paymentMethodDetached(_ method: PaymentMethod, _ context: EventContext) async throws -> EventDisposition {
        guard try await context.transaction.defaultPaymentMethod() == method.id else {
            return context.processed("\(method.id) is not the card this server charges")
        }
        guard try await context.transaction.setDefaultPaymentMethod(nil, savedAt: context.created) else {
            return context.stale("a payment method saved later than \(method.id)'s removal is recorded already")
        }
        try await context.audit("payment_method.removed", before: ["paymentMethod": method.id], after: nil)
        return context.processed()
    }

    /// `payment_method.automatically_updated`: the card network replaced the card's number or expiry; the payment
    /// method keeps its id, so charges go on with it. Recorded for the tenant's audit trail.
    func paymentMethodUpdated(_ method: PaymentMethod, _ context: EventContext) async throws -> EventDisposition {
        let isDefault = try await context.transaction.defaultPaymentMethod() == method.id
        var after = ["paymentMethod": method.id, "default": String(isDefault)]
        if let card = method.card {
            after["card"] = "\(card.brand ?? "card") \(card.last4 ?? "????") \(card.expMonth.map(String.init) ?? "?")/\(card.expYear.map(String.init) ?? "?")"
        }
        try await context.audit("payment_method.updated", before: nil, after: after)
        return context.processed()
    }

    /// `setup_intent.setup_failed`: saving a card failed; nothing changes, and the tenant's audit trail says why.
    func setupFailed(_ intent: SetupIntent, _ context: EventContext) async throws -> EventDisposition {
        let reason = intent.lastSetupError.map { [$0.code, $0.declineCode, $0.message].compactMap { $0 }.joined(separator: ": ") }
            ?? "the card could not be saved"
        try await context.audit("payment_method.setup_failed", before: nil, after: ["setupIntent": intent.id, "failure": reason])
        return context.processed()
    }

    // MARK: Payment intents

    /// `payment_intent.processing`: an asynchronous payment is under way; nothing is credited or paid until it
    /// succeeds.
    func paymentIntentProcessing(_ intent: PaymentIntent, _ context: EventContext) async throws -> EventDisposition {
        try await context.audit("payment.processing", before: nil, after: [
            "paymentIntent": intent.id, "amount": String(intent.amount), "currency": intent.currency,
            "purpose": intent.metadata?["purpose"] ?? "other",
        ])
        return context.processed("processing: credited or paid only when it succeeds")
    }

    /// `payment_intent.canceled`: a top-up whose payment was canceled fails (its credits were never granted); an
    /// invoice attempt's is left to dunning, which schedules the next attempt.
    func paymentIntentCanceled(_ intent: PaymentIntent, _ context: EventContext) async throws -> EventDisposition {
        let reason = "the payment was canceled (\(intent.cancellationReason ?? "no reason given"))"
        if intent.metadata?["purpose"] == "credit_topup",
           let topUp = try await context.transaction.lockTopUp(
               id: intent.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: nil, paymentIntentID: intent.id),
           topUp.status == "pending"
        {
            try await context.transaction.updateTopUp(topUp.id, status: "failed", paymentIntentID: intent.id, lastFailure: reason)
            try await context.audit("topup.failed", before: ["topUp": topUp.id.lowercased, "status": topUp.status],
                                    after: ["topUp": topUp.id.lowercased, "status": "failed", "failure": reason])
            return context.processed()
        }
        try await context.audit("payment.canceled", before: nil, after: ["paymentIntent": intent.id, "failure": reason])
        return context.processed()
    }

    // MARK: Invoice payments

    /// `invoice_payment.paid`: how current API versions say which PaymentIntent paid a Stripe invoice (the invoice no
    /// longer names it, and webhooks never include its `payments`). Links the recorded payment to the invoice; a
    /// payment not recorded yet is waited for.
    func invoicePaymentPaid(_ payment: InvoicePayment, _ context: EventContext) async throws -> EventDisposition {
        guard let invoice = payment.invoice?.id else {
            return context.rejected("invoice payment \(payment.id ?? "-") names no invoice")
        }
        guard let intent = payment.payment?.paymentIntent?.id else {
            return context.ignored("invoice payment \(payment.id ?? "-") of \(invoice) was not made by a PaymentIntent")
        }
        guard try await context.transaction.linkPayment(intent, toInvoice: invoice) else {
            throw RetryLater("the payment \(intent) of \(invoice) is not recorded yet")
        }
        try await context.audit("invoice.payment_linked", before: nil, after: [
            "invoice": invoice, "paymentIntent": intent, "amountPaid": String(payment.amountPaid ?? 0),
        ])
        return context.processed()
    }
}
