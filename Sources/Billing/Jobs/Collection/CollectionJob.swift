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

/// What one step of collecting an invoice did.
enum CollectionOutcome: Sendable, Equatable {
    case charged, declined, actionRequired, overdue, writtenOff, waitingForCard
    /// Nothing is due (any more) by then.
    case nothingDue
}

/// What an attempt sends, planned in its first phase and kept with its intent.
struct AttemptPlan: Codable, Sendable {
    var invoice: UUID
    var number: String
    var attempt: Int
    var amount: Int
    var currency: String
    var customer: String
    var method: String
    /// The attempt's scheduled time (a late run does each step at its own time).
    var at: Date
    /// The payment link of an earlier attempt: expired first, so that it cannot be paid while the card is charged.
    var retiring: String?
}

/// What the Stripe phase of an attempt got.
enum AttemptAnswer: Sendable {
    /// Charged (or on its way): paid once Stripe's `payment_intent.succeeded` arrives.
    case charged(PaymentIntent)
    /// Authentication is needed: a hosted payment link instead (`intent`: the PaymentIntent that asked for it).
    case needsAction(intent: String?, link: CheckoutSession)
    /// Declined, or refused for good as it is (a detached card, say): a failed attempt, on the schedule.
    case failed(outcome: String, failure: String)

    var intentID: String? {
        switch self {
        case .charged(let intent): intent.id
        case .needsAction(let intent, _): intent
        case .failed: nil
        }
    }

    /// As the attempts table records it.
    var outcome: String {
        switch self {
        case .charged: "succeeded"
        case .needsAction: "action_required"
        case .failed(let outcome, _): outcome
        }
    }

    var failure: String? {
        switch self {
        case .charged: nil
        case .needsAction: "authentication required"
        case .failed(_, let failure): failure
        }
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

    mutating func append(_ outcome: CollectionOutcome, _ number: String) {
        switch outcome {
        case .charged: charged.append(number)
        case .declined: declined.append(number)
        case .actionRequired: actionRequired.append(number)
        case .overdue: overdue.append(number)
        case .writtenOff: writtenOff.append(number)
        case .waitingForCard: waitingForCard.append(number)
        case .nothingDue: break
        }
    }
}

extension BillingService {
    /// Collection and dunning, as of `at`: every attempt, notice and write-off due by then, each at its scheduled time.
    /// An attempt charges the saved card off-session (a real PaymentIntent, keyed by invoice and attempt, so a crash
    /// never charges twice) in atomic phases: no lock or transaction is held while Stripe is asked. A decline schedules
    /// the next attempt by the dunning schedule (days after the first failure); after the last one the invoice is
    /// overdue and the tenant not entitled; an invoice overdue for the write-off period is written off. An invoice
    /// becomes paid only when Stripe says so (`payment_intent.succeeded`).
    public func collectInvoices(at: Date, logger: Logger) async throws -> CollectionReport {
        var report = CollectionReport()
        guard let client = stripe.client else { return report }
        let overdueBefore = at.addingTimeInterval(-Double(settings.writeOffAfter.components.seconds))
        let scans = InvoiceScans(database: environment.database)
        for tenant in try await scans.tenantsWithInvoicesToCollect(at: at, overdueBefore: overdueBefore) {
            var partial = CollectionReport()
            do {
                let due = try await tenants.database.transaction(tenant, operation: "collect invoices") { transaction in
                    try await transaction.invoices.toCollect(at: at, overdueBefore: overdueBefore).map { ($0.id, $0.number) }
                }
                for (invoice, number) in due {
                    // Every step due by `at`, each at its own scheduled time, so one late run does what the schedule
                    // said (attempts, then overdue, then write-off) rather than one step.
                    for _ in 0..<settings.dunning.maximumSteps {
                        let outcome = try await collectionStep(invoice, tenant: tenant, at: at, overdueBefore: overdueBefore, client: client)
                        guard outcome != .nothingDue else { break }
                        partial.append(outcome, number)
                    }
                }
            } catch {
                logger.warning("could not collect a tenant's invoices; the next run tries again", metadata: [
                    "tenant": "\(tenant)", "error": "\(error)",
                ])
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
        }
        return report
    }

    /// The next step of one invoice due by `at`: a write-off, or an attempt in atomic phases (`retry`: an operator's,
    /// now, whatever the schedule says).
    func collectionStep(
        _ invoiceID: UUID, tenant: UUID, at: Date, overdueBefore: Date? = nil, client: StripeClient, retry: Bool = false
    ) async throws -> CollectionOutcome {
        try await inAtomicPhases(
            tenant, .invoice, operation: retry ? "billing.retryInvoice" : "collection",
            decide: { transaction -> PhaseOne<AttemptPlan, CollectionOutcome> in
                guard var invoice = try await transaction.invoices.find(invoiceID) else { return .answered(.nothingDue) }
                if invoice.status == .overdue, !retry {
                    guard let overdue = invoice.overdueAt, let overdueBefore, overdue <= overdueBefore else { return .answered(.nothingDue) }
                    try await writeOff(&invoice, transaction, at: overdue.addingTimeInterval(Double(settings.writeOffAfter.components.seconds)))
                    return .answered(.writtenOff)
                }
                let due: Date
                if retry {
                    guard invoice.status.isRetryable else { return .answered(.nothingDue) }
                    due = at
                } else {
                    guard invoice.status.isCollectible, let next = invoice.nextAttemptAt, next.isAtOrBefore(at)
                    else { return .answered(.nothingDue) }
                    due = next
                }
                guard let method = try await transaction.tenantRow.defaultPaymentMethod(),
                      let customer = try await transaction.tenantRow.lock()?.stripeCustomerID
                else {
                    // No card: nothing to try and nobody to remind; saving a card makes it due again.
                    invoice.nextAttemptAt = nil
                    try await transaction.invoices.updateCollection(invoice)
                    return .answered(.waitingForCard)
                }
                let attempt = invoice.attempts + 1
                return .call(request: "invoice:\(invoiceID.lowercased):attempt:\(attempt)", plan: AttemptPlan(
                    invoice: invoiceID, number: invoice.number, attempt: attempt, amount: invoice.amountDue, currency: invoice.currency,
                    customer: customer, method: method, at: due, retiring: invoice.paymentLink))
            },
            call: { plan, _ in try await self.charge(plan, tenant: tenant, client: client) },
            record: { transaction, plan, _, answer, recorded in
                guard !recorded, var invoice = try await transaction.invoices.find(plan.invoice) else { return .nothingDue }
                try await transaction.invoices.recordAttempt(
                    invoice: invoice.id, attempt: plan.attempt, paymentIntentID: answer.intentID, outcome: answer.outcome,
                    failure: answer.failure, at: plan.at)
                // It moved on while Stripe was asked (the charge's own webhook came first, the job wrote it off): the
                // attempt is kept, the invoice left as it is.
                guard invoice.status.isRetryable else { return .nothingDue }
                if plan.retiring != nil { invoice.paymentLink = nil }
                if invoice.status == .overdue { try invoice.move(to: .open) }
                return try await recordAttempt(answer, &invoice, plan, transaction)
            },
            settle: { intent in
                // Its PaymentIntent is keyed by invoice and attempt, not by the intent: the next run asks again under
                // that key, and a charge Stripe made is replayed, never made twice.
                try await self.finish(intent, tenant: tenant, as: "abandoned", because: "settled: the attempt's own key is re-sent")
            })
    }

    /// The Stripe phase of an attempt: the earlier link retired, the card charged off-session, and a payment link made
    /// when the bank asks for authentication.
    func charge(_ plan: AttemptPlan, tenant: UUID, client: StripeClient) async throws -> AttemptAnswer {
        if let link = plan.retiring { try await retire(link, invoice: plan.invoice, number: plan.number, client: client) }
        let metadata: FormValue = [
            "invoice_id": .string(plan.invoice.lowercased), "tenant_id": .string(tenant.lowercased), "purpose": "invoice",
            "invoice_number": .string(plan.number), "attempt": .int(plan.attempt),
        ]
        do {
            let intent = try await client.createPaymentIntent([
                "amount": .int(plan.amount), "currency": .string(plan.currency), "customer": .string(plan.customer),
                "payment_method": .string(plan.method), "off_session": true, "confirm": true, "metadata": metadata,
                // Off-session nobody can follow a redirect: only payment methods that need none, and no return_url.
                "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
                "description": .string("Invoice \(plan.number)"),
            ], idempotencyKey: "invoice:\(plan.invoice.lowercased):attempt:\(plan.attempt)")
            guard intent.status == "requires_action" else { return .charged(intent) }
            return .needsAction(intent: intent.id, link: try await paymentLink(plan, tenant: tenant, client: client))
        } catch StripeError.refused(let refusal) where refusal.httpStatus == 402 && refusal.code == "authentication_required" {
            return .needsAction(intent: nil, link: try await paymentLink(plan, tenant: tenant, client: client))
        } catch StripeError.refused(let refusal) where refusal.httpStatus == 402 {
            return .failed(outcome: "declined", failure: refusal.message ?? refusal.code ?? "declined")
        } catch StripeError.refused(let refusal) where !refusal.isMalformedRequest && refusal.httpStatus != 429 && (400..<500).contains(refusal.httpStatus) {
            return .failed(outcome: "error", failure: refusal.message ?? refusal.code ?? "refused")
        } catch {
            // Our own request at fault (no attempt is spent; the run fails loudly and the same attempt is made once the
            // server is fixed), or Stripe unreachable, rate limiting or failing (the same key is sent again next run).
            throw error
        }
    }

    /// The last phase of an attempt: what Stripe answered (the attempt itself is recorded already), applied to the
    /// invoice.
    func recordAttempt(
        _ answer: AttemptAnswer, _ invoice: inout InvoiceRecord, _ plan: AttemptPlan, _ transaction: TenantTransaction
    ) async throws -> CollectionOutcome {
        switch answer {
        case .charged:
            // Until Stripe confirms, the invoice is processing: never charged again, voided or retried.
            try invoice.move(to: .processing)
            invoice.attempts = plan.attempt
            invoice.nextAttemptAt = nil
            try await transaction.invoices.updateCollection(invoice)
            return .charged
        case .needsAction(_, let link):
            try await requireAction(&invoice, attempt: plan.attempt, link: link, transaction, at: plan.at)
            return invoice.status == .overdue ? .overdue : .actionRequired
        case .failed(_, let failure):
            try await failed(&invoice, attempt: plan.attempt, failure: failure, transaction, at: plan.at)
            return invoice.status == .overdue ? .overdue : .declined
        }
    }
}
