import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

/// The operators' actions on one of this server's invoices (`billing.voidInvoice`, `billing.retryInvoice`), and the
/// retiring of a payment link that the collection job shares with them.
public struct InvoiceActionParams: Decodable, Sendable {
    public var invoiceId: String
}

extension BillingAPI {
    func lockedInvoice(_ params: InvoiceActionParams, _ transaction: TenantTransaction) async throws -> InvoiceRecord {
        guard let id = UUID(uuidString: params.invoiceId) else {
            throw BillingError.invalidParams(field: "invoiceId", "invoiceId must be the id of one of this server's invoices (billing.invoices, source billing)")
        }
        guard let invoice = try await transaction.invoice(id) else {
            throw BillingError.notFound("this tenant has no invoice \(params.invoiceId); list them with billing.invoices")
        }
        return invoice
    }

    /// A payment link that must no longer be payable: expired at Stripe before the next step (an attempt, a void) goes
    /// ahead. A link Stripe will not expire because it was just paid stops that step: the payment's webhook settles
    /// the invoice, and nothing is charged twice or voided after payment. Stripe not answering stops it too, and the
    /// step is tried again later (the link stays as it is).
    func retireLink(_ invoice: inout InvoiceRecord, client: StripeClient?) async throws {
        guard let link = invoice.paymentLink else { return }
        if let client, let session = link.split(separator: "/").last.map(String.init), session.hasPrefix("cs_") {
            guard try await client.expireUnlessCompleted(session) else {
                throw BillingError.conflict(
                    "invoice \(invoice.number) was just paid through its payment link; Stripe's confirmation settles it (nothing else is done to it)",
                    data: ["invoiceId": .string(invoice.id.lowercased), "sessionId": .string(session)])
            }
        }
        invoice.paymentLink = nil
    }

    /// `billing.voidInvoice` (operator): an unpaid invoice is voided; the credits applied to it come back.
    func voidInvoice(_ params: InvoiceActionParams, call: TenantCall) async throws -> InvoiceView {
        let actor = call.actor
        let at = now()
        let client = stripe.client
        return try await tenants.database.transaction(call.tenantID, operation: "void invoice") { transaction in
            var invoice = try await lockedInvoice(params, transaction)
            guard ["draft", "open", "action_required", "overdue"].contains(invoice.status) else {
                throw BillingError.preconditionFailed(
                    invoice.status == "processing"
                        ? "invoice \(invoice.number) was charged and Stripe's confirmation is on its way; refund the payment instead (billing.refund)"
                        : "invoice \(invoice.number) is \(invoice.status); only unpaid invoices can be voided")
            }
            let before = invoice.status
            invoice.status = "void"
            invoice.nextAttemptAt = nil
            try await retireLink(&invoice, client: client)
            try await transaction.updateCollection(invoice)
            if invoice.creditsApplied > 0 {
                let returned = try await transaction.applyCredits(
                    source: "invoice-void:\(invoice.id.lowercased)", kind: "invoice_void", amount: invoice.creditsApplied,
                    reason: "credits applied to voided invoice \(invoice.number)", requireBalance: false)
                if returned.outcome == .applied {
                    try await notifier.creditsChanged(
                        transaction, available: returned.available, frozen: returned.frozen, change: invoice.creditsApplied,
                        kind: "invoice_void", reason: "voided invoice \(invoice.number)")
                }
            }
            try await notifier.syncInvoiceSubscription(transaction, invoice.subscriptionID, at: at)
            try await transaction.audit(actor: actor, action: "invoice.voided", before: ["status": before],
                                        after: ["status": "void", "invoice": invoice.number, "creditsReturned": String(invoice.creditsApplied)])
            try await notifier.invoiceEvent(transaction, "invoice.voided", invoice, at: at)
            return view(invoice)
        }
    }

    /// `billing.retryInvoice` (operator): an attempt now, outside the dunning schedule (a new card was saved, say).
    func retryInvoice(_ params: InvoiceActionParams, call: TenantCall) async throws -> InvoiceView {
        let client = try requireStripe()
        let at = now()
        return try await tenants.database.transaction(call.tenantID, operation: "retry invoice") { transaction in
            var invoice = try await lockedInvoice(params, transaction)
            guard ["open", "action_required", "overdue"].contains(invoice.status) else {
                throw BillingError.preconditionFailed(
                    invoice.status == "processing"
                        ? "invoice \(invoice.number) was charged and Stripe's confirmation is on its way; nothing to retry"
                        : "invoice \(invoice.number) is \(invoice.status); only unpaid invoices can be retried")
            }
            invoice.status = "open"
            try await retireLink(&invoice, client: client)
            var report = CollectionReport()
            try await attempt(&invoice, transaction, at: at, client: client, report: &report)
            return view(try await transaction.invoice(invoice.id) ?? invoice)
        }
    }

    func view(_ invoice: InvoiceRecord) -> InvoiceView {
        InvoiceView(
            id: invoice.id.lowercased, source: "billing", number: invoice.number, status: invoice.status, amountDue: invoice.amountDue,
            currency: invoice.currency, periodStart: invoice.periodStart, periodEnd: invoice.periodEnd,
            url: "\(stripe.publicURL)/invoices/\(invoice.id.lowercased)", createdAt: invoice.createdAt)
    }
}
