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

/// `billing.invoices`'s answer.
public typealias InvoicesPage = Page<InvoiceView>

extension InvoiceView: PageItem {
    public static let listKey = "invoices"
}

extension SubscriptionRecord {
    /// A subscription this server bills by invoice (its id is ours, not Stripe's).
    var isInvoiceBilled: Bool { stripeSubscriptionID.hasPrefix(InvoiceService.invoiceSubscriptionPrefix) }
}

extension InvoiceService {
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
            if let live = try await transaction.subscriptions.livePlan() {
                throw BillingError.conflict(
                    "this tenant already has a \(live.status) '\(live.plan)' subscription; cancel it first (billing.cancel)",
                    data: ["plan": .string(live.plan), "status": .string(live.status)])
            }
            if let overdue = try await transaction.invoices.oldestOverdue() {
                throw BillingError.preconditionFailed(
                    "invoice \(overdue) is overdue: it must be paid (save a card with billing.setupPaymentMethod; an operator retries it with billing.retryInvoice) or written off before a new subscription")
            }
            guard try await transaction.tenantRow.defaultPaymentMethod() != nil else {
                throw BillingError.preconditionFailed(
                    "plan '\(plan.key)' is billed by invoice and charged to a saved card; save one first with billing.setupPaymentMethod")
            }
            let id = Self.invoiceSubscriptionPrefix + newID().lowercased.replacingOccurrences(of: "-", with: "")
            try await transaction.subscriptions.insertInvoiceBilled(
                id: id, plan: plan.key, interval: interval.rawValue, seats: seats, periodStart: now,
                periodEnd: BillingPeriod.end(from: now, interval: interval), now: now)
            try await transaction.audit.record(actor: actor, action: "subscription.created", before: nil, after: [
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
            guard try await transaction.subscriptions.invoiceBilled() != nil else {
                throw BillingError.preconditionFailed(
                    "one-off charges ride on this server's invoices; this tenant is not on a plan billed by invoice (billing.subscribeByInvoice)")
            }
            let charge = try await transaction.invoices.addCharge(
                id: newID(), description: description, amount: params.amount, currency: currency, key: params.idempotencyKey, now: now())
            guard charge.amount == params.amount, charge.description == description else {
                throw BillingError.conflict(
                    "idempotencyKey '\(params.idempotencyKey)' was used for a charge of \(charge.amount) ('\(charge.description)'); use a new key",
                    data: ["amount": .integer(charge.amount), "description": .string(charge.description)])
            }
            try await transaction.audit.record(actor: actor, action: "charge.added", before: nil, after: [
                "charge": charge.id.lowercased, "amount": String(charge.amount), "description": charge.description,
            ])
            return ChargeView(
                chargeId: charge.id.lowercased, description: charge.description, amount: charge.amount, currency: charge.currency,
                invoiceId: charge.invoiceID?.lowercased)
        }
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
            let page = Self.page(try await transaction.invoices.summaries(before: before, limit: limit + 1), limit: limit) {
                Self.timeCursor(at: $0.createdAt, id: $0.id)
            }
            return InvoicesPage(
                items: page.rows.map { summary in
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
            guard try await transaction.tenantRow.isLive(includingDeleted: includingDeleted) else { return nil }
            return try await transaction.invoices.find(id, lock: false)
        }
    }
}
