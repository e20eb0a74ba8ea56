import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

/// What one collection run did, by invoice number.
public struct CollectionReport: Sendable, Equatable, Encodable {
    public var charged: [String] = []
    public var declined: [String] = []
    public var actionRequired: [String] = []
    public var overdue: [String] = []
    public var writtenOff: [String] = []
    public var waitingForCard: [String] = []

    public init() {}
}

extension BillingAPI {
    /// Collection and dunning, as of `at`: every attempt, notice and write-off due by then, each at its scheduled time.
    /// An attempt charges the saved card off-session (a real PaymentIntent, keyed by invoice and attempt, so a crash
    /// never charges twice); a decline schedules the next attempt by the dunning schedule (days after the first
    /// failure); after the last one the invoice is overdue and the tenant not entitled; an invoice overdue for the
    /// write-off period is written off. An invoice becomes paid only when Stripe says so (`payment_intent.succeeded`).
    public func collectInvoices(at: Date, logger: Logger) async throws -> CollectionReport {
        var report = CollectionReport()
        guard let client = stripe.client else { return report }
        let overdueBefore = at.addingTimeInterval(-Double(settings.writeOffAfter.components.seconds))
        let inbox = EventInbox(database: tenants.database)
        for tenant in try await inbox.tenantsWithInvoicesToCollect(at: at, overdueBefore: overdueBefore) {
            do {
                let partial = try await tenants.database.transaction(tenant, operation: "collect invoices") { transaction in
                    var partial = CollectionReport()
                    for invoice in try await transaction.invoicesToCollect(at: at, overdueBefore: overdueBefore) {
                        try await settle(invoice, transaction, at: at, overdueBefore: overdueBefore, client: client, report: &partial)
                    }
                    return partial
                }
                report.merge(partial)
                for (what, numbers) in [("charged (paid when Stripe confirms)", partial.charged), ("declined; next attempt scheduled", partial.declined),
                                        ("needs authentication; payment link sent", partial.actionRequired),
                                        ("overdue after the last attempt; tenant suspended", partial.overdue),
                                        ("written off", partial.writtenOff), ("not tried: no saved card", partial.waitingForCard)] {
                    for number in numbers {
                        logger.notice("invoice \(what)", metadata: ["tenant": "\(tenant)", "invoice": "\(number)"])
                    }
                }
            } catch {
                logger.warning("could not collect a tenant's invoices; the next run tries again", metadata: [
                    "tenant": "\(tenant)", "error": "\(error)",
                ])
            }
        }
        return report
    }

    /// Every step of one invoice due by `at`, each at its own scheduled time, so one late run does what the schedule
    /// said (attempts, then overdue, then write-off) rather than one step.
    func settle(
        _ invoice: InvoiceRecord, _ transaction: TenantTransaction, at: Date, overdueBefore: Date, client: StripeClient,
        report: inout CollectionReport
    ) async throws {
        var invoice = invoice
        for _ in 0..<(settings.dunningDays.count + 3) {
            if invoice.status == "overdue" {
                if let overdue = invoice.overdueAt, overdue <= overdueBefore {
                    try await writeOff(&invoice, transaction, at: overdue.addingTimeInterval(Double(settings.writeOffAfter.components.seconds)))
                    report.writtenOff.append(invoice.number)
                }
                return
            }
            guard invoice.status == "open" || invoice.status == "action_required", let due = invoice.nextAttemptAt, due.isAtOrBefore(at) else { return }
            try await attempt(&invoice, transaction, at: due, client: client, report: &report)
        }
    }

    func writeOff(_ invoice: inout InvoiceRecord, _ transaction: TenantTransaction, at: Date) async throws {
        invoice.status = "written_off"
        invoice.nextAttemptAt = nil
        try await transaction.updateCollection(invoice, writtenOffAt: at)
        try await transaction.audit(actor: AuditActor(kind: .system, id: "dunning"), action: "invoice.written_off",
                                    before: ["status": "overdue"], after: ["status": "written_off", "invoice": invoice.number])
        try await notifier.invoiceEvent(transaction, "invoice.written_off", invoice, at: at)
    }

    /// One attempt at `at` (its scheduled time).
    func attempt(
        _ invoice: inout InvoiceRecord, _ transaction: TenantTransaction, at: Date, client: StripeClient, report: inout CollectionReport
    ) async throws {
        let attempt = invoice.attempts + 1
        guard let method = try await transaction.defaultPaymentMethod(),
              let customer = try await transaction.lockTenant()?.stripeCustomerID
        else {
            // No card: nothing to try and nobody to remind; saving a card makes it due again.
            invoice.nextAttemptAt = nil
            try await transaction.updateCollection(invoice)
            report.waitingForCard.append(invoice.number)
            return
        }
        // A link from an earlier attempt must not be payable while this one charges the card.
        try await retireLink(&invoice, client: client)
        let metadata: FormValue = [
            "invoice_id": .string(invoice.id.lowercased), "tenant_id": .string(transaction.tenant.lowercased), "purpose": "invoice",
            "invoice_number": .string(invoice.number), "attempt": .int(attempt),
        ]
        let result: Result<PaymentIntent, StripeError>
        do {
            result = .success(try await client.createPaymentIntent([
                "amount": .int(invoice.amountDue), "currency": .string(invoice.currency), "customer": .string(customer),
                "payment_method": .string(method), "off_session": true, "confirm": true, "metadata": metadata,
                // Off-session nobody can follow a redirect: only payment methods that need none, and no return_url.
                "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
                "description": .string("Invoice \(invoice.number)"),
            ], idempotencyKey: "invoice:\(invoice.id.lowercased):attempt:\(attempt)"))
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let intent) where intent.status == "requires_action":
            try await requireAction(&invoice, attempt: attempt, intentID: intent.id, transaction, at: at, client: client)
            report.append(invoice.status == "overdue" ? \.overdue : \.actionRequired, invoice.number)
        case .success(let intent):
            // Charged (or on its way): paid once Stripe's payment_intent.succeeded arrives. Until then the invoice is
            // processing: never charged again, voided or retried.
            invoice.status = "processing"
            invoice.attempts = attempt
            invoice.nextAttemptAt = nil
            try await transaction.updateCollection(invoice)
            try await transaction.recordAttempt(
                invoice: invoice.id, attempt: attempt, paymentIntentID: intent.id, outcome: "succeeded", failure: nil, at: at)
            report.charged.append(invoice.number)
        case .failure(.refused(let refusal)) where refusal.httpStatus == 402 && refusal.code == "authentication_required":
            try await requireAction(&invoice, attempt: attempt, intentID: nil, transaction, at: at, client: client)
            report.append(invoice.status == "overdue" ? \.overdue : \.actionRequired, invoice.number)
        case .failure(.refused(let refusal)) where refusal.httpStatus == 402:
            try await failed(&invoice, attempt: attempt, outcome: "declined", failure: refusal.message ?? refusal.code ?? "declined", transaction, at: at)
            report.append(invoice.status == "overdue" ? \.overdue : \.declined, invoice.number)
        case .failure(.refused(let refusal)) where refusal.isMalformedRequest:
            // Our request, not the customer's card, is at fault: no attempt is spent; the run fails loudly and the
            // same attempt is tried again once the server is fixed.
            throw StripeError.refused(refusal)
        case .failure(.refused(let refusal)) where refusal.httpStatus != 429 && (400..<500).contains(refusal.httpStatus):
            // Stripe will never accept this request as it is (a detached card, say): a failed attempt, on the schedule.
            try await failed(&invoice, attempt: attempt, outcome: "error", failure: refusal.message ?? refusal.code ?? "refused", transaction, at: at)
            report.append(invoice.status == "overdue" ? \.overdue : \.declined, invoice.number)
        case .failure(let error):
            // Stripe unreachable, rate limiting or failing: the same attempt (same key: never charged twice) is tried
            // again at the next run.
            throw error
        }
    }

    /// Attempts that count against the dunning schedule.
    static let failedOutcomes: Set<String> = ["declined", "error", "action_required"]

    /// A failed attempt: the next one by the schedule, or overdue (and the tenant suspended) after the last.
    func failed(
        _ invoice: inout InvoiceRecord, attempt: Int, outcome: String, failure: String, _ transaction: TenantTransaction, at: Date
    ) async throws {
        try await transaction.recordAttempt(
            invoice: invoice.id, attempt: attempt, paymentIntentID: nil, outcome: outcome, failure: failure, at: at)
        let failures = max(1, try await transaction.attempts(of: invoice.id).filter { Self.failedOutcomes.contains($0.outcome) }.count)
        let firstFailed = invoice.firstFailedAt ?? at
        invoice.attempts = attempt
        invoice.firstFailedAt = firstFailed
        let schedule = settings.dunningDays
        if failures <= schedule.count {
            // The tenant stays entitled until the last attempt fails; the product hears of each failure.
            invoice.nextAttemptAt = firstFailed.addingTimeInterval(Double(schedule[failures - 1]) * 86400)
            try await transaction.updateCollection(invoice)
            try await notifier.paymentFailed(transaction, [
                "invoiceId": .string(invoice.id.lowercased), "invoiceNumber": .string(invoice.number), "amount": .integer(invoice.amountDue),
                "currency": .string(invoice.currency), "failure": .string(failure), "purpose": "invoice", "attempt": .integer(attempt),
                "nextAttemptAt": .string(invoice.nextAttemptAt?.formatted(.iso8601) ?? ""),
            ])
            if failures == schedule.count {
                // The next attempt is the last.
                try await notifier.invoiceEvent(transaction, "invoice.final_notice", invoice, at: at)
            }
        } else {
            try await markOverdue(&invoice, transaction, at: at)
        }
        try await transaction.audit(actor: AuditActor(kind: .system, id: "dunning"), action: "invoice.payment_failed", before: nil, after: [
            "invoice": invoice.number, "attempt": String(attempt), "failure": failure, "status": invoice.status,
            "nextAttemptAt": invoice.nextAttemptAt?.formatted(.iso8601) ?? "",
        ])
    }

    /// The last attempt failed: no more are scheduled, the subscription loses its entitlement, the product is told.
    func markOverdue(_ invoice: inout InvoiceRecord, _ transaction: TenantTransaction, at: Date) async throws {
        invoice.status = "overdue"
        invoice.nextAttemptAt = nil
        invoice.overdueAt = at
        try await transaction.updateCollection(invoice)
        try await notifier.syncInvoiceSubscription(transaction, invoice.subscriptionID, at: at)
        try await notifier.invoiceEvent(transaction, "invoice.suspended", invoice, at: at)
    }

    /// 3-D Secure is needed: no more automatic attempts; a hosted payment link (Checkout for this invoice) instead.
    func requireAction(
        _ invoice: inout InvoiceRecord, attempt: Int, intentID: String?, _ transaction: TenantTransaction, at: Date, client: StripeClient
    ) async throws {
        let metadata: FormValue = [
            "invoice_id": .string(invoice.id.lowercased), "tenant_id": .string(transaction.tenant.lowercased), "purpose": "invoice",
            "invoice_number": .string(invoice.number),
        ]
        var parameters: FormParameters = [
            "mode": "payment",
            "client_reference_id": .string(transaction.tenant.lowercased),
            "success_url": .string("\(stripe.publicURL)/billing?invoice=\(invoice.id.lowercased)"),
            // Told apart from a paid return, so the billing page can say the invoice is still due.
            "cancel_url": .string("\(stripe.publicURL)/billing?invoice=\(invoice.id.lowercased)&canceled=true"),
            "line_items": [[
                "price_data": ["currency": .string(invoice.currency), "unit_amount": .int(invoice.amountDue),
                               "product_data": ["name": .string("Invoice \(invoice.number)")]],
                "quantity": 1,
            ]],
            "metadata": metadata,
            "payment_intent_data": ["metadata": metadata],
        ]
        if let customer = try await transaction.lockTenant()?.stripeCustomerID { parameters["customer"] = .string(customer) }
        let session = try await client.createCheckoutSession(parameters, idempotencyKey: "invoice-link:\(invoice.id.lowercased):\(attempt)")
        try await transaction.recordAttempt(
            invoice: invoice.id, attempt: attempt, paymentIntentID: intentID, outcome: "action_required", failure: "authentication required",
            at: at)
        // The dunning clock keeps running: the next scheduled attempt tries again (and makes a fresh link, since
        // Checkout's expire in a day); after the last, the invoice is overdue like any unpaid one.
        let failures = try await transaction.attempts(of: invoice.id).filter { Self.failedOutcomes.contains($0.outcome) }.count
        let firstFailed = invoice.firstFailedAt ?? at
        invoice.firstFailedAt = firstFailed
        invoice.attempts = attempt
        invoice.paymentLink = session.url
        if failures > settings.dunningDays.count {
            try await markOverdue(&invoice, transaction, at: at)
            return
        }
        invoice.status = "action_required"
        invoice.nextAttemptAt = firstFailed.addingTimeInterval(Double(settings.dunningDays[max(1, failures) - 1]) * 86400)
        try await transaction.updateCollection(invoice)
        try await transaction.audit(actor: AuditActor(kind: .system, id: "dunning"), action: "invoice.action_required", before: nil,
                                    after: ["invoice": invoice.number, "paymentLink": session.url ?? ""])
        try await notifier.invoiceEvent(transaction, "invoice.action_required", invoice, at: at)
    }
}

/// What invoices change, wherever it happens (the collection job, the API, or Stripe's webhook for a payment).
extension Notifier {
    /// `payment_intent.succeeded` for an invoice: paid, at any stage (a late success after the last attempt or a
    /// write-off too), and the subscription entitled again when no other invoice is overdue. A payment for an
    /// invoice that was voided or paid already is recorded and reported (the payment itself is kept by the caller).
    func invoicePaid(
        _ invoiceID: UUID, intent: String, _ transaction: TenantTransaction, at: Date, actor: AuditActor, logger: Logger
    ) async throws -> Bool {
        guard var invoice = try await transaction.invoice(invoiceID) else { return false }
        guard invoice.status != "paid", invoice.status != "void" else {
            logger.error("a payment arrived for an invoice that is already settled; refund it if it is a second payment", metadata: [
                "tenant": "\(transaction.tenant)", "invoice": "\(invoice.number)", "status": "\(invoice.status)", "paymentIntent": "\(intent)",
            ])
            try await transaction.audit(actor: actor, action: "invoice.payment_after_settlement", before: ["status": invoice.status],
                                        after: ["invoice": invoice.number, "paymentIntent": intent])
            return true
        }
        let before = invoice.status
        invoice.status = "paid"
        invoice.paidAt = at
        invoice.nextAttemptAt = nil
        invoice.paymentLink = nil
        try await transaction.updateCollection(invoice)
        try await syncInvoiceSubscription(transaction, invoice.subscriptionID, at: at)
        try await transaction.audit(actor: actor, action: "invoice.paid", before: ["status": before],
                                    after: ["status": "paid", "invoice": invoice.number, "paymentIntent": intent])
        try await invoiceEvent(transaction, "invoice.paid", invoice, at: at)
        return true
    }

    /// The invoice-billed subscription's status follows all its invoices: unpaid while one is overdue, active
    /// otherwise (a canceled one stays canceled).
    func syncInvoiceSubscription(_ transaction: TenantTransaction, _ subscriptionID: String, at: Date) async throws {
        guard let (current, _) = try await transaction.invoiceSubscription(), current.stripeSubscriptionID == subscriptionID,
              !current.isTerminal
        else { return }
        let status = try await transaction.invoiceSubscriptionStatus(subscriptionID)
        guard status != current.status else { return }
        try await setInvoiceSubscription(transaction, current, status: status, at: at)
    }

    func setInvoiceSubscription(_ transaction: TenantTransaction, _ current: SubscriptionRecord, status: String, at: Date) async throws {
        var record = current
        record.status = status
        record.pastDueSince = nil
        try await transaction.updateSubscription(record, now: at)
        try await transaction.audit(
            actor: AuditActor(kind: .system, id: "invoicing"), action: "subscription.status_changed",
            before: StripeEventProcessor.auditFields(current), after: StripeEventProcessor.auditFields(record))
        try await subscriptionChanged(transaction, before: current, after: record, now: at)
    }

    func invoiceEvent(_ transaction: TenantTransaction, _ type: String, _ invoice: InvoiceRecord, at: Date) async throws {
        try await emit(transaction, type, [
            "invoiceId": .string(invoice.id.lowercased), "invoiceNumber": .string(invoice.number), "status": .string(invoice.status),
            "amountDue": .integer(invoice.amountDue), "currency": .string(invoice.currency),
            "paymentLink": invoice.paymentLink.map(JSONValue.string) ?? .null,
        ], now: at)
    }
}

extension CollectionReport {
    mutating func merge(_ other: CollectionReport) {
        charged += other.charged
        declined += other.declined
        actionRequired += other.actionRequired
        overdue += other.overdue
        writtenOff += other.writtenOff
        waitingForCard += other.waitingForCard
    }

    mutating func append(_ list: WritableKeyPath<CollectionReport, [String]>, _ number: String) {
        self[keyPath: list].append(number)
    }
}
