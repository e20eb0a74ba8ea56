import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

/// What invoices change, wherever it happens (the collection job, the API, or Stripe's webhook for a payment).
extension Notifier {
    /// `payment_intent.succeeded` for an invoice: paid, at any stage (a late success after the last attempt or a
    /// write-off too), and the subscription entitled again when no other invoice is overdue. A payment for an
    /// invoice that was voided or paid already is recorded and reported (the payment itself is kept by the caller).
    func invoicePaid(
        _ invoiceID: UUID, intent: String, _ transaction: TenantTransaction, at: Date, actor: AuditActor, logger: Logger
    ) async throws -> Bool {
        guard var invoice = try await transaction.invoices.find(invoiceID) else { return false }
        guard !invoice.status.isSettled else {
            logger.error("a payment arrived for an invoice that is already settled; refund it if it is a second payment", metadata: [
                "tenant": "\(transaction.tenant)", "invoice": "\(invoice.number)", "status": "\(invoice.status)", "paymentIntent": "\(intent)",
            ])
            try await transaction.audit.record(actor: actor, action: "invoice.payment_after_settlement", before: ["status": invoice.status.rawValue],
                                        after: ["invoice": invoice.number, "paymentIntent": intent])
            return true
        }
        let before = invoice.status
        try invoice.move(to: .paid)
        invoice.paidAt = at
        invoice.nextAttemptAt = nil
        invoice.paymentLink = nil
        try await transaction.invoices.updateCollection(invoice)
        try await syncInvoiceSubscription(transaction, invoice.subscriptionID, at: at)
        try await transaction.audit.record(actor: actor, action: "invoice.paid", before: ["status": before.rawValue],
                                    after: ["status": "paid", "invoice": invoice.number, "paymentIntent": intent])
        try await invoiceEvent(transaction, "invoice.paid", invoice, at: at)
        return true
    }

    /// The invoice-billed subscription's status follows all its invoices: unpaid while one is overdue, active
    /// otherwise (a canceled one stays canceled).
    func syncInvoiceSubscription(_ transaction: TenantTransaction, _ subscriptionID: String, at: Date) async throws {
        guard let (current, _) = try await transaction.subscriptions.invoiceBilled(), current.stripeSubscriptionID == subscriptionID,
              !current.isTerminal
        else { return }
        let status = try await transaction.invoices.subscriptionStatus(subscriptionID)
        guard status != current.status else { return }
        try await setInvoiceSubscription(transaction, current, status: status, at: at)
    }

    func setInvoiceSubscription(_ transaction: TenantTransaction, _ current: SubscriptionRecord, status: SubscriptionStatus, at: Date) async throws {
        var record = current
        record.status = status
        record.pastDueSince = nil
        try await transaction.subscriptions.update(record, now: at)
        try await transaction.audit.record(
            actor: AuditActor(kind: .system, id: "invoicing"), action: "subscription.status_changed",
            before: StripeEventProcessor.auditFields(current), after: StripeEventProcessor.auditFields(record))
        try await subscriptionChanged(transaction, before: current, after: record, now: at)
    }

    func invoiceEvent(_ transaction: TenantTransaction, _ type: String, _ invoice: InvoiceRecord, at: Date) async throws {
        try await emit(transaction, type, [
            "invoiceId": .string(invoice.id.lowercased), "invoiceNumber": .string(invoice.number), "status": .string(invoice.status.rawValue),
            "amountDue": .integer(invoice.amountDue), "currency": .string(invoice.currency),
            "paymentLink": invoice.paymentLink.map(JSONValue.string) ?? .null,
        ], now: at)
    }
}
