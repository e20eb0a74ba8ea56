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

extension InvoiceService {
    func lockedInvoice(_ params: InvoiceActionParams, _ transaction: TenantTransaction) async throws -> InvoiceRecord {
        guard let id = UUID(uuidString: params.invoiceId) else {
            throw BillingError.invalidParams(field: "invoiceId", "invoiceId must be the id of one of this server's invoices (billing.invoices, source billing)")
        }
        guard let invoice = try await transaction.invoices.find(id) else {
            throw BillingError.notFound("this tenant has no invoice \(params.invoiceId); list them with billing.invoices")
        }
        return invoice
    }

    /// `billing.voidInvoice` (operator), in atomic phases: an unpaid invoice is voided (its payment link expired at
    /// Stripe first, with no lock held); the credits applied to it come back.
    func voidInvoice(_ params: InvoiceActionParams, call: TenantCall) async throws -> InvoiceView {
        try await spendRateToken(settings.rateLimits.invoiceActions, tenant: call.tenantID, method: "billing.voidInvoice")
        let actor = call.actor
        let client = stripe.client
        return try await inAtomicPhases(
            call.tenantID, .invoice, operation: "billing.voidInvoice",
            decide: { transaction -> PhaseOne<String, InvoiceView> in
                let invoice = try await lockedVoidable(params, transaction)
                // An attempt still waiting for Stripe's answer may yet charge it.
                if try await !transaction.intents.started(subject: IntentSubject.invoice.name, request: nil)
                    .filter({ $0.request.hasPrefix("invoice:\(invoice.id.lowercased):") }).isEmpty
                {
                    throw BillingError.conflict(
                        "invoice \(invoice.number) is being charged right now; wait for the attempt's outcome (billing.invoices), then void it or refund the payment",
                        data: ["retryAfter": .integer(Int(intentInFlight))])
                }
                guard let link = invoice.paymentLink, client != nil else {
                    return .answered(try await self.void(invoice, transaction, actor: actor))
                }
                return .call(request: "void:\(invoice.id.lowercased)", plan: link)
            },
            call: { link, _ in
                guard let client, let invoice = UUID(uuidString: params.invoiceId) else { return }
                try await self.retire(link, invoice: invoice, number: params.invoiceId, client: client)
            },
            record: { transaction, _, _, _, _ in
                var invoice = try await lockedVoidable(params, transaction)
                invoice.paymentLink = nil
                return try await self.void(invoice, transaction, actor: actor)
            },
            settle: { intent in
                try await self.finish(intent, tenant: call.tenantID, as: "abandoned", because: "settled: a new void starts afresh")
            })
    }

    func lockedVoidable(_ params: InvoiceActionParams, _ transaction: TenantTransaction) async throws -> InvoiceRecord {
        let invoice = try await lockedInvoice(params, transaction)
        guard invoice.status.isVoidable else {
            throw BillingError.preconditionFailed(
                invoice.status == .processing
                    ? "invoice \(invoice.number) was charged and Stripe's confirmation is on its way; refund the payment instead (billing.refund)"
                    : "invoice \(invoice.number) is \(invoice.status); only unpaid invoices can be voided")
        }
        return invoice
    }

    /// Voids an unpaid invoice whose link (if any) no longer pays: the credits applied to it come back.
    func void(_ invoice: InvoiceRecord, _ transaction: TenantTransaction, actor: AuditActor) async throws -> InvoiceView {
        var invoice = invoice
        let at = now()
        let before = invoice.status
        try invoice.move(to: .void)
        invoice.nextAttemptAt = nil
        try await transaction.invoices.updateCollection(invoice)
        if invoice.creditsApplied > 0 {
            let returned = try await transaction.credits.apply(
                source: "invoice-void:\(invoice.id.lowercased)", kind: "invoice_void", amount: invoice.creditsApplied,
                reason: "credits applied to voided invoice \(invoice.number)", requireBalance: false)
            if returned.outcome == .applied {
                try await notifier.creditsChanged(
                    transaction, available: returned.available, frozen: returned.frozen, change: invoice.creditsApplied,
                    kind: "invoice_void", reason: "voided invoice \(invoice.number)")
            }
        }
        try await notifier.syncInvoiceSubscription(transaction, invoice.subscriptionID, at: at)
        try await transaction.audit.record(actor: actor, action: "invoice.voided", before: ["status": before.rawValue],
                                    after: ["status": "void", "invoice": invoice.number, "creditsReturned": String(invoice.creditsApplied)])
        try await notifier.invoiceEvent(transaction, "invoice.voided", invoice, at: at)
        return view(invoice)
    }

    /// `billing.retryInvoice` (operator): an attempt now, outside the dunning schedule (a new card was saved, say), in
    /// atomic phases like the collection job's.
    func retryInvoice(_ params: InvoiceActionParams, call: TenantCall) async throws -> InvoiceView {
        let client = try requireStripe()
        try await spendRateToken(settings.rateLimits.invoiceActions, tenant: call.tenantID, method: "billing.retryInvoice")
        let invoice = try await tenants.database.transaction(call.tenantID, operation: "retry invoice") { transaction in
            let invoice = try await lockedInvoice(params, transaction)
            guard invoice.status.isRetryable else {
                throw BillingError.preconditionFailed(
                    invoice.status == .processing
                        ? "invoice \(invoice.number) was charged and Stripe's confirmation is on its way; nothing to retry"
                        : "invoice \(invoice.number) is \(invoice.status); only unpaid invoices can be retried")
            }
            return invoice
        }
        _ = try await collectionStep(invoice.id, tenant: call.tenantID, at: now(), client: client, retry: true)
        return try await tenants.database.transaction(call.tenantID, operation: "retry invoice", readOnly: true) { transaction in
            view(try await transaction.invoices.find(invoice.id, lock: false) ?? invoice)
        }
    }

    func view(_ invoice: InvoiceRecord) -> InvoiceView {
        InvoiceView(
            id: invoice.id.lowercased, source: "billing", number: invoice.number, status: invoice.status.rawValue, amountDue: invoice.amountDue,
            currency: invoice.currency, periodStart: invoice.periodStart, periodEnd: invoice.periodEnd,
            url: "\(stripe.publicURL)/invoices/\(invoice.id.lowercased)", createdAt: invoice.createdAt)
    }
}

/// Shared with the collection job, which retires an attempt's payment link before the next.
extension BillingService {
    /// A payment link that must no longer be payable: expired at Stripe before the next step (an attempt, a void) goes
    /// ahead. A link Stripe will not expire because it was just paid stops that step: the payment's webhook settles
    /// the invoice, and nothing is charged twice or voided after payment. Stripe not answering stops it too, and the
    /// step is tried again later (the link stays as it is).
    func retire(_ link: String, invoice: UUID, number: String, client: StripeClient) async throws {
        guard let session = link.split(separator: "/").last.map(String.init), session.hasPrefix("cs_") else { return }
        guard try await client.expireUnlessCompleted(session) else {
            throw BillingError.conflict(
                "invoice \(number) was just paid through its payment link; Stripe's confirmation settles it (nothing else is done to it)",
                data: ["invoiceId": .string(invoice.lowercased), "sessionId": .string(session)])
        }
    }
}
