import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging

public struct SubscribeByInvoiceParams: Decodable, Sendable {
    public var plan: String
    public var interval: String?
    public var seats: Int?
}

public struct AddChargeParams: Decodable, Sendable {
    public var description: String
    public var amount: Int
    public var idempotencyKey: String
}

public struct ChargeView: Encodable, Sendable {
    public var chargeId: String
    public var description: String
    public var amount: Int
    public var currency: String
    /// The invoice that carries it; null until the next invoice is issued.
    @OrNull public var invoiceId: String?
}

public struct InvoiceView: Encodable, Sendable {
    public var id: String
    /// `billing` (issued by this server) or `stripe` (Stripe Billing's, for subscriptions there).
    public var source: String
    @OrNull public var number: String?
    @OrNull public var status: String?
    public var amountDue: Int
    @OrNull public var currency: String?
    @OrNull public var periodStart: Date?
    @OrNull public var periodEnd: Date?
    /// Where a person sees it: `/invoices/{id}` here, or Stripe's hosted invoice page.
    @OrNull public var url: String?
    public var createdAt: Date
}

public struct InvoicesPage: Encodable, Sendable {
    public var invoices: [InvoiceView]
    @OrNull public var nextCursor: String?
}

/// What one run of the invoicing job did.
public struct InvoiceRunReport: Sendable, Equatable, Encodable {
    public var created: [String] = []
    public var paidByCredits: [String] = []
    public var collection = CollectionReport()
}

extension SubscriptionRecord {
    /// A subscription this server bills by invoice (its id is ours, not Stripe's).
    var isInvoiceBilled: Bool { stripeSubscriptionID.hasPrefix(BillingAPI.invoiceSubscriptionPrefix) }
}

extension BillingAPI {
    static let invoiceSubscriptionPrefix = "inv_sub_"

    /// `billing.subscribeByInvoice`: a plan billed by this server's invoices. The first invoice is issued at once
    /// (credits first, then the saved card); later ones at each period's start.
    func subscribeByInvoice(_ params: SubscribeByInvoiceParams, call: TenantCall) async throws -> BillingStatus {
        let plan = try catalog.plan(named: params.plan)
        guard plan.billing == .invoice else {
            throw BillingError.invalidParams(field: "plan", "plan '\(plan.key)' is billed through Stripe subscriptions; subscribe with billing.checkout")
        }
        let interval = try parseInterval(params.interval)
        guard plan.price(for: interval) != nil else {
            throw BillingError.invalidParams(field: "interval", "plan '\(plan.key)' is offered \(plan.intervals.map(\.rawValue).joined(separator: " or "))")
        }
        let seats = params.seats ?? plan.seats.default
        try plan.seats.validate(seats, plan: plan.key)
        let actor = call.actor
        let now = now()
        try await tenants.database.transaction(call.tenantID, operation: "subscribe by invoice") { transaction in
            _ = try await lockedTenant(transaction)
            if let live = try await transaction.liveSubscription() {
                throw BillingError.conflict(
                    "this tenant already has a \(live.status) '\(live.plan)' subscription; cancel it first (billing.cancel)",
                    data: ["plan": .string(live.plan), "status": .string(live.status)])
            }
            if let overdue = try await transaction.oldestOverdueInvoice() {
                throw BillingError.preconditionFailed(
                    "invoice \(overdue) is overdue: it must be paid (save a card with billing.setupPaymentMethod; an operator retries it with billing.retryInvoice) or written off before a new subscription")
            }
            guard try await transaction.defaultPaymentMethod() != nil else {
                throw BillingError.preconditionFailed(
                    "plan '\(plan.key)' is billed by invoice and charged to a saved card; save one first with billing.setupPaymentMethod")
            }
            let id = Self.invoiceSubscriptionPrefix + newID().lowercased.replacingOccurrences(of: "-", with: "")
            try await transaction.insertInvoiceSubscription(
                id: id, plan: plan.key, interval: interval.rawValue, seats: seats, periodStart: now,
                periodEnd: BillingPeriod.end(from: now, interval: interval), now: now)
            try await transaction.audit(actor: actor, action: "subscription.created", before: nil, after: [
                "subscription": id, "plan": plan.key, "interval": interval.rawValue, "seats": String(seats), "billing": "invoice",
            ])
            _ = try await issueDueInvoices(transaction, at: now)
        }
        return try await status(of: call.tenantID)
    }

    /// `billing.addCharge` (operator): a one-off charge the tenant's next invoice carries, once per key.
    func addCharge(_ params: AddChargeParams, call: TenantCall) async throws -> ChargeView {
        let description = params.description.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(description.count) else {
            throw BillingError.invalidParams(field: "description", "description must be 1 to 200 characters, as it appears on the invoice")
        }
        guard (1...100_000_000).contains(params.amount) else {
            throw BillingError.invalidParams(field: "amount", "amount must be from 1 to 100000000 minor units (got \(params.amount))")
        }
        guard (1...255).contains(params.idempotencyKey.count) else {
            throw BillingError.invalidParams(field: "idempotencyKey", "idempotencyKey must be 1 to 255 characters")
        }
        let currency = catalog.credits.currency
        let actor = call.actor
        return try await tenants.database.transaction(call.tenantID, operation: "add charge") { transaction in
            _ = try await lockedTenant(transaction)
            guard try await transaction.invoiceSubscription() != nil else {
                throw BillingError.preconditionFailed(
                    "one-off charges ride on this server's invoices; this tenant is not on a plan billed by invoice (billing.subscribeByInvoice)")
            }
            let charge = try await transaction.addCharge(
                id: newID(), description: description, amount: params.amount, currency: currency, key: params.idempotencyKey, now: now())
            guard charge.amount == params.amount, charge.description == description else {
                throw BillingError.conflict(
                    "idempotencyKey '\(params.idempotencyKey)' was used for a charge of \(charge.amount) ('\(charge.description)'); use a new key",
                    data: ["amount": .integer(charge.amount), "description": .string(charge.description)])
            }
            try await transaction.audit(actor: actor, action: "charge.added", before: nil, after: [
                "charge": charge.id.lowercased, "amount": String(charge.amount), "description": charge.description,
            ])
            return ChargeView(
                chargeId: charge.id.lowercased, description: charge.description, amount: charge.amount, currency: charge.currency,
                invoiceId: charge.invoiceID?.lowercased)
        }
    }

    /// The invoicing job: every invoice-billed tenant gets exactly one invoice per period that has started by `at`
    /// (a rerun creates nothing new); periods that ended roll over.
    public func runInvoices(at: Date, logger: Logger) async throws -> InvoiceRunReport {
        var report = InvoiceRunReport()
        for tenant in try await EventInbox(database: tenants.database).invoiceBilledTenants(at: at) {
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

    /// Within the tenant's transaction: the invoice of every period started by `at` that has none yet.
    func issueDueInvoices(_ transaction: TenantTransaction, at: Date) async throws -> [InvoiceRecord] {
        var issued: [InvoiceRecord] = []
        guard var (subscription, start) = try await transaction.invoiceSubscription() else { return issued }
        guard let plan = try? catalog.plan(named: subscription.plan),
              let interval = BillingInterval(rawValue: subscription.interval), let price = plan.price(for: interval)
        else { return issued }
        // A bound on the loop: a job that was stopped for a long time catches up at most a year of months at once.
        for _ in 0..<13 {
            guard start.isAtOrBefore(at), !subscription.isTerminal else { break }
            var end = subscription.currentPeriodEnd ?? BillingPeriod.end(from: start, interval: interval)
            // A suspended (unpaid) subscription accrues no invoices: its periods pass unbilled until it is paid up.
            if subscription.status != "unpaid",
               !(try await transaction.invoiceExists(subscriptionID: subscription.stripeSubscriptionID, periodStart: start)) {
                issued.append(try await issueInvoice(transaction, subscription: subscription, plan: plan, price: price, start: start, end: end, at: at))
            }
            guard end.isAtOrBefore(at) else { break }
            if subscription.cancelAtPeriodEnd {
                try await notifier.setInvoiceSubscription(transaction, subscription, status: "canceled", at: end)
                break
            }
            start = end
            end = BillingPeriod.boundary(after: start, anchor: subscription.stripeCreatedAt ?? start, interval: interval)
            try await transaction.advancePeriod(subscription.stripeSubscriptionID, start: start, end: end, now: at)
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
        let charges = try await transaction.pendingCharges(upTo: at)
        lines += charges.map { InvoiceRecord.Line(description: $0.description, quantity: 1, unitAmount: $0.amount) }
        let subtotal = lines.reduce(0) { $0 + $1.amount }
        let id = newID()
        // Wallet credits first, at the catalog's value per credit; what they do not cover is charged to the card.
        var totals = InvoiceTotals.applying(
            availableCredits: try await transaction.creditBalance().available, worth: catalog.credits.unitAmount, to: subtotal,
            currency: price.currency)
        if totals.creditsApplied > 0 {
            let applied = try await transaction.applyCredits(
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
            id: id, number: try await transaction.nextInvoiceNumber(), subscriptionID: subscription.stripeSubscriptionID,
            periodStart: start, periodEnd: end, status: paid ? .paid : .open, currency: price.currency, subtotal: subtotal,
            creditsApplied: totals.creditsApplied, creditAmount: totals.creditAmount, amountDue: totals.amountDue,
            nextAttemptAt: paid ? nil : at, paidAt: paid ? at : nil, createdAt: at, lines: lines)
        try await transaction.insertInvoice(invoice, charges: charges.map(\.id))
        if invoice.status == .paid {
            try await notifier.invoiceEvent(transaction, "invoice.paid", invoice, at: at)
        }
        try await transaction.audit(actor: AuditActor(kind: .system, id: "invoicing"), action: "invoice.issued", before: nil, after: [
            "invoice": id.lowercased, "number": invoice.number, "subtotal": String(subtotal), "credits": String(invoice.creditsApplied),
            "amountDue": String(totals.amountDue), "status": invoice.status.rawValue,
        ])
        return invoice
    }

    /// `billing.invoices`: this server's invoices and Stripe Billing's, newest first, each with its `source`.
    func invoices(_ params: PageParams, call: TenantCall) async throws -> InvoicesPage {
        let limit = try params.validatedLimit()
        let before = try Self.timeCursor(params.cursor, method: "billing.invoices")
        let publicURL = stripe.publicURL
        // Owners and admins get links that open without a sign-in; members, who may not see an invoice's lines, do not.
        let links = [.owner, .admin, .operator].contains(call.principal.role) ? settings.invoiceLinks : nil
        let now = now()
        return try await tenants.database.transaction(call.tenantID, operation: "read invoices", readOnly: true) { transaction in
            try await requireReadable(transaction, call)
            let page = Self.page(try await transaction.invoiceSummaries(before: before, limit: limit + 1), limit: limit) {
                Self.timeCursor(at: $0.createdAt, id: $0.id)
            }
            return InvoicesPage(
                invoices: page.rows.map { summary in
                    InvoiceView(
                        id: summary.id, source: summary.source, number: summary.number, status: summary.status,
                        amountDue: summary.amountDue, currency: summary.currency, periodStart: summary.periodStart,
                        periodEnd: summary.periodEnd,
                        url: summary.source == "billing" ? Self.invoiceURL(summary.id, tenant: call.tenantID, publicURL: publicURL, links: links, now: now)
                            : summary.hostedURL,
                        createdAt: summary.createdAt)
                },
                nextCursor: page.next)
        }
    }

    /// Where one of this server's invoices is viewed: signed (no sign-in needed until it expires) when `links` is given.
    static func invoiceURL(_ id: String, tenant: UUID, publicURL: String, links: InvoiceLinks?, now: Date) -> String {
        guard let links, let invoice = UUID(uuidString: id) else { return "\(publicURL)/invoices/\(id)" }
        return links.url(publicURL: publicURL, tenant: tenant, invoice: invoice, now: now)
    }

    /// One of this server's invoices, for its hosted view (`GET /invoices/{id}`): a deleted tenant's only for operators
    /// (`includingDeleted`), never through a signed link.
    public func invoiceDocument(_ id: UUID, tenant: UUID, includingDeleted: Bool) async throws -> InvoiceRecord? {
        try await tenants.database.transaction(tenant, operation: "read invoice", readOnly: true) { transaction in
            guard try await transaction.tenantIsLive(includingDeleted: includingDeleted) else { return nil }
            return try await transaction.invoice(id, lock: false)
        }
    }
}
