import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

/// Stripe Billing's invoices, and the payments of ours made through Stripe's invoice payments.
extension StripeEventProcessor {
    /// `invoice.*`: Stripe Billing's invoice for the tenant, with its payment problem if any, linked to its payment.
    func invoiceChanged(_ invoice: Invoice, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        if let (last, status) = try await transaction.invoices.lockStripeInvoice(invoice.id) {
            if context.created < last {
                return context.stale("an event of \(last) about \(invoice.id) was applied already")
            }
            // Stripe sends finalized, paid and payment_succeeded in one second: an invoice never goes back.
            if context.created == last, Self.invoiceRank(invoice.status) < Self.invoiceRank(status) {
                return context.stale("\(invoice.id) is \(status ?? "-") already; an event of the same second says \(invoice.status ?? "-")")
            }
        }
        let problem: String? = switch context.event.type {
        case "invoice.payment_failed": "payment_failed"
        case "invoice.payment_action_required": "action_required"
        case "invoice.overdue": "overdue"
        case "invoice.finalization_failed": "finalization_failed"
        default: invoice.status == "open" ? try await transaction.invoices.stripeInvoiceProblem(invoice.id) : nil
        }
        try await transaction.invoices.saveStripeInvoice(StripeInvoiceRecord(
            invoiceID: invoice.id, stripeSubscriptionID: invoice.subscriptionID, number: invoice.number, status: invoice.status,
            amountDue: invoice.amountDue ?? 0, amountPaid: invoice.amountPaid ?? 0, amountRemaining: invoice.amountRemaining ?? 0,
            currency: invoice.currency, hostedInvoiceURL: invoice.hostedInvoiceURL, attemptCount: invoice.attemptCount ?? 0,
            nextPaymentAttempt: Self.date(invoice.nextPaymentAttempt), paymentProblem: problem,
            periodStart: Self.date(invoice.periodStart), periodEnd: Self.date(invoice.periodEnd), lastEventAt: context.created,
            createdAt: Self.date(invoice.created) ?? context.created), now: now())
        if invoice.status == "paid", let intent = invoice.paymentIntentID {
            try await transaction.payments.link(intent, toInvoice: invoice.id)
        }
        if context.event.type == "invoice.payment_failed" || context.event.type == "invoice.payment_action_required" {
            try await notifier.paymentFailed(transaction, [
                "invoiceId": .string(invoice.id), "amount": .integer(invoice.amountDue ?? 0), "currency": .string(invoice.currency ?? ""),
                "failure": .string(problem ?? "payment_failed"), "purpose": "subscription",
                "hostedInvoiceUrl": invoice.hostedInvoiceURL.map(JSONValue.string) ?? .null,
            ])
        }
        try await context.audit(
            context.event.type, before: nil,
            after: ["invoice": invoice.id, "status": invoice.status ?? "", "amountDue": String(invoice.amountDue ?? 0),
                    "amountPaid": String(invoice.amountPaid ?? 0)].merging(problem.map { ["problem": $0] } ?? [:]) { $1 })
        return context.processed()
    }

    /// How far along an invoice is: draft, open, then settled (paid, void, uncollectible).
    static func invoiceRank(_ status: String?) -> Int {
        switch status {
        case "draft": 0
        case "open": 1
        case "paid", "void", "uncollectible": 2
        default: 0
        }
    }

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
        guard try await context.transaction.payments.link(intent, toInvoice: invoice) else {
            throw RetryLater("the payment \(intent) of \(invoice) is not recorded yet")
        }
        try await context.audit("invoice.payment_linked", before: nil, after: [
            "invoice": invoice, "paymentIntent": intent, "amountPaid": String(payment.amountPaid ?? 0),
        ])
        return context.processed()
    }
}
