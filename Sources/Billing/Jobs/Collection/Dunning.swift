import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

extension BillingService {
    func writeOff(_ invoice: inout InvoiceRecord, _ transaction: TenantTransaction, at: Date) async throws {
        try invoice.move(to: .writtenOff)
        invoice.nextAttemptAt = nil
        try await transaction.invoices.updateCollection(invoice, writtenOffAt: at)
        try await transaction.audit.record(actor: AuditActor(kind: .system, id: "dunning"), action: "invoice.written_off",
                                    before: ["status": "overdue"], after: ["status": "written_off", "invoice": invoice.number])
        try await notifier.invoiceEvent(transaction, "invoice.written_off", invoice, at: at)
    }

    /// A failed attempt (recorded already): the next one by the schedule, or overdue (and the tenant suspended) after
    /// the last.
    func failed(
        _ invoice: inout InvoiceRecord, attempt: Int, failure: String, _ transaction: TenantTransaction, at: Date
    ) async throws {
        let failures = try await transaction.invoices.attempts(of: invoice.id).filter { DunningSchedule.failedOutcomes.contains($0.outcome) }.count
        let firstFailed = invoice.firstFailedAt ?? at
        invoice.attempts = attempt
        invoice.firstFailedAt = firstFailed
        switch settings.dunning.step(afterFailures: failures, firstFailedAt: firstFailed) {
        case .retry(let next, let isLast):
            // The tenant stays entitled until the last attempt fails; the product hears of each failure.
            invoice.nextAttemptAt = next
            try await transaction.invoices.updateCollection(invoice)
            try await notifier.paymentFailed(transaction, [
                "invoiceId": .string(invoice.id.lowercased), "invoiceNumber": .string(invoice.number), "amount": .integer(invoice.amountDue),
                "currency": .string(invoice.currency), "failure": .string(failure), "purpose": "invoice", "attempt": .integer(attempt),
                "nextAttemptAt": .string(invoice.nextAttemptAt?.formatted(.iso8601) ?? ""),
            ])
            if isLast {
                try await notifier.invoiceEvent(transaction, "invoice.final_notice", invoice, at: at)
            }
        case .overdue:
            try await markOverdue(&invoice, transaction, at: at)
        }
        try await transaction.audit.record(actor: AuditActor(kind: .system, id: "dunning"), action: "invoice.payment_failed", before: nil, after: [
            "invoice": invoice.number, "attempt": String(attempt), "failure": failure, "status": invoice.status.rawValue,
            "nextAttemptAt": invoice.nextAttemptAt?.formatted(.iso8601) ?? "",
        ])
    }

    /// The last attempt failed: no more are scheduled, the subscription loses its entitlement, the product is told.
    func markOverdue(_ invoice: inout InvoiceRecord, _ transaction: TenantTransaction, at: Date) async throws {
        try invoice.move(to: .overdue)
        invoice.nextAttemptAt = nil
        invoice.overdueAt = at
        try await transaction.invoices.updateCollection(invoice)
        try await notifier.syncInvoiceSubscription(transaction, invoice.subscriptionID, at: at)
        try await notifier.invoiceEvent(transaction, "invoice.suspended", invoice, at: at)
    }

    /// A hosted payment link (Checkout for this invoice), for the customer to authenticate the payment themselves.
    func paymentLink(_ plan: AttemptPlan, tenant: UUID, client: StripeClient) async throws -> CheckoutSession {
        let request = CheckoutSessionRequest(
            mode: .payment, customer: plan.customer, clientReferenceID: tenant.lowercased,
            successURL: "\(stripe.publicURL)/billing?invoice=\(plan.invoice.lowercased)",
            // Told apart from a paid return, so the billing page can say the invoice is still due.
            cancelURL: "\(stripe.publicURL)/billing?invoice=\(plan.invoice.lowercased)&canceled=true",
            lineItems: [.amount(currency: plan.currency, unitAmount: plan.amount, product: "Invoice \(plan.number)", quantity: 1)],
            metadata: [
                ("invoice_id", .string(plan.invoice.lowercased)), ("tenant_id", .string(tenant.lowercased)), ("purpose", "invoice"),
                ("invoice_number", .string(plan.number)),
            ])
        return try await client.createCheckoutSession(request, idempotencyKey: "invoice-link:\(plan.invoice.lowercased):\(plan.attempt)")
    }

    /// 3-D Secure is needed (the attempt is recorded already): no more automatic attempts; the payment link instead.
    func requireAction(
        _ invoice: inout InvoiceRecord, attempt: Int, link session: CheckoutSession, _ transaction: TenantTransaction, at: Date
    ) async throws {
        // The dunning clock keeps running: the next scheduled attempt tries again (and makes a fresh link, since
        // Checkout's expire in a day); after the last, the invoice is overdue like any unpaid one.
        let failures = try await transaction.invoices.attempts(of: invoice.id).filter { DunningSchedule.failedOutcomes.contains($0.outcome) }.count
        let firstFailed = invoice.firstFailedAt ?? at
        invoice.firstFailedAt = firstFailed
        invoice.attempts = attempt
        invoice.paymentLink = session.url
        guard case .retry(let next, _) = settings.dunning.step(afterFailures: failures, firstFailedAt: firstFailed) else {
            try await markOverdue(&invoice, transaction, at: at)
            return
        }
        try invoice.move(to: .actionRequired)
        invoice.nextAttemptAt = next
        try await transaction.invoices.updateCollection(invoice)
        try await transaction.audit.record(actor: AuditActor(kind: .system, id: "dunning"), action: "invoice.action_required", before: nil,
                                    after: ["invoice": invoice.number, "paymentLink": session.url ?? ""])
        try await notifier.invoiceEvent(transaction, "invoice.action_required", invoice, at: at)
    }
}
