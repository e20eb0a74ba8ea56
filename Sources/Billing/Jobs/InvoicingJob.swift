import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging

/// What one run of the invoicing job did.
public struct InvoiceRunReport: Sendable, Equatable, Encodable {
    public var created: [String] = []
    public var paidByCredits: [String] = []
    public var collection = CollectionReport()
}

extension InvoicingJob {
    /// The invoicing job: every invoice-billed tenant gets exactly one invoice per period that has started by `at`
    /// (a rerun creates nothing new); periods that ended roll over.
    public func run(at: Date, logger: Logger) async throws -> InvoiceRunReport {
        var report = InvoiceRunReport()
        for tenant in try await InvoiceScans(database: environment.database).invoiceBilledTenants(at: at) {
            do {
                let issued = try await tenants.database.transaction(tenant, operation: "issue invoices") { transaction in
                    try await issueDueInvoices(transaction, at: at)
                }
                for invoice in issued {
                    report.created.append(invoice.number)
                    if invoice.status == .paid { report.paidByCredits.append(invoice.number) }
                }
            } catch {
                logger.warning("could not issue a tenant's invoices; the next run tries again", metadata: [
                    "tenant": "\(tenant)", "error": "\(error)",
                ])
            }
        }
        report.collection = try await collectInvoices(at: at, logger: logger)
        return report
    }
}

/// Shared with billing.subscribeByInvoice, which issues the first invoice at once.
extension BillingService {
    /// Within the tenant's transaction: the invoice of every period started by `at` that has none yet.
    func issueDueInvoices(_ transaction: TenantTransaction, at: Date) async throws -> [InvoiceRecord] {
        var issued: [InvoiceRecord] = []
        guard var (subscription, start) = try await transaction.subscriptions.invoiceBilled() else { return issued }
        guard let plan = try? catalog.plan(named: subscription.plan),
              let interval = BillingInterval(rawValue: subscription.interval), let price = plan.price(for: interval)
        else { return issued }
        // A bound on the loop: a job that was stopped for a long time catches up at most a year of months at once.
        for _ in 0..<13 {
            guard start.isAtOrBefore(at), !subscription.isTerminal else { break }
            var end = subscription.currentPeriodEnd ?? BillingPeriod.end(from: start, interval: interval)
            // A suspended (unpaid) subscription accrues no invoices: its periods pass unbilled until it is paid up.
            if subscription.status != .unpaid,
               !(try await transaction.invoices.exists(subscriptionID: subscription.stripeSubscriptionID, periodStart: start)) {
                issued.append(try await issueInvoice(transaction, subscription: subscription, plan: plan, price: price, start: start, end: end, at: at))
            }
            guard end.isAtOrBefore(at) else { break }
            if subscription.cancelAtPeriodEnd {
                try await notifier.setInvoiceSubscription(transaction, subscription, status: .canceled, at: end)
                break
            }
            start = end
            end = BillingPeriod.boundary(after: start, anchor: subscription.stripeCreatedAt ?? start, interval: interval)
            try await transaction.subscriptions.advancePeriod(subscription.stripeSubscriptionID, start: start, end: end, now: at)
            subscription.currentPeriodEnd = end
        }
        return issued
    }

    func issueInvoice(
        _ transaction: TenantTransaction, subscription: SubscriptionRecord, plan: Plan, price: PlanPrice, start: Date, end: Date, at: Date
    ) async throws -> InvoiceRecord {
        let day = Date.ISO8601FormatStyle().year().month().day()
        var lines = [InvoiceRecord.Line(
            description: "\(plan.name), \(subscription.seats) seat\(subscription.seats == 1 ? "" : "s"), \(start.formatted(day)) to \(end.formatted(day))",
            quantity: subscription.seats, unitAmount: price.amount)]
        let charges = try await transaction.invoices.pendingCharges(upTo: at)
        lines += charges.map { InvoiceRecord.Line(description: $0.description, quantity: 1, unitAmount: $0.amount) }
        let subtotal = lines.reduce(0) { $0 + $1.amount }
        let id = newID()
        // Wallet credits first, at the catalog's value per credit; what they do not cover is charged to the card.
        var totals = InvoiceTotals.applying(
            availableCredits: try await transaction.credits.balance().available, worth: catalog.credits.unitAmount, to: subtotal,
            currency: price.currency)
        if totals.creditsApplied > 0 {
            let applied = try await transaction.credits.apply(
                source: "invoice:\(id.lowercased)", kind: "invoice", amount: -totals.creditsApplied, reason: "applied to an invoice",
                requireBalance: true)
            if applied.outcome == .applied {
                try await notifier.creditsChanged(
                    transaction, available: applied.available, frozen: applied.frozen, change: -totals.creditsApplied, kind: "invoice",
                    reason: "applied to an invoice")
            } else {
                totals = .uncredited(subtotal)
            }
        }
        let paid = totals.isPaidByCredits
        let invoice = InvoiceRecord(
            id: id, number: try await transaction.invoices.nextNumber(), subscriptionID: subscription.stripeSubscriptionID,
            periodStart: start, periodEnd: end, status: paid ? .paid : .open, currency: price.currency, subtotal: subtotal,
            creditsApplied: totals.creditsApplied, creditAmount: totals.creditAmount, amountDue: totals.amountDue,
            nextAttemptAt: paid ? nil : at, paidAt: paid ? at : nil, createdAt: at, lines: lines)
        try await transaction.invoices.insert(invoice, charges: charges.map(\.id))
        if invoice.status == .paid {
            try await notifier.invoiceEvent(transaction, "invoice.paid", invoice, at: at)
        }
        try await transaction.audit.record(actor: AuditActor(kind: .system, id: "invoicing"), action: "invoice.issued", before: nil, after: [
            "invoice": id.lowercased, "number": invoice.number, "subtotal": String(subtotal), "credits": String(invoice.creditsApplied),
            "amountDue": String(totals.amountDue), "status": invoice.status.rawValue,
        ])
        return invoice
    }
}
