import BillingCore
import Foundation
import Logging
import PostgresNIO

/// An invoice this server issued, with its lines.
public struct InvoiceRecord: Sendable, Equatable {
    public struct Line: Sendable, Equatable {
        public var description: String
        public var quantity: Int
        public var unitAmount: Int
        public var amount: Int

        public init(description: String, quantity: Int, unitAmount: Int) {
            self.description = description
            self.quantity = quantity
            self.unitAmount = unitAmount
            amount = quantity * unitAmount
        }
    }

    public var id: UUID
    public var number: String
    public var subscriptionID: String
    public var periodStart: Date
    public var periodEnd: Date
    /// Changed only by `move(to:)`, along `InvoiceStatus.next`.
    public private(set) var status: InvoiceStatus
    public var currency: String
    public var subtotal: Int
    public var creditsApplied: Int
    public var creditAmount: Int
    public var amountDue: Int
    public var attempts: Int
    public var nextAttemptAt: Date?
    public var paymentLink: String?
    public var paidAt: Date?
    public var createdAt: Date
    public var lines: [Line]
    /// When collection first failed, and when the last attempt left it overdue.
    public var firstFailedAt: Date?
    public var overdueAt: Date?

    public init(
        id: UUID, number: String, subscriptionID: String, periodStart: Date, periodEnd: Date, status: InvoiceStatus, currency: String,
        subtotal: Int, creditsApplied: Int, creditAmount: Int, amountDue: Int, attempts: Int = 0, nextAttemptAt: Date?,
        paymentLink: String? = nil, paidAt: Date?, createdAt: Date, lines: [Line]
    ) {
        self.id = id
        self.number = number
        self.subscriptionID = subscriptionID
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.status = status
        self.currency = currency
        self.subtotal = subtotal
        self.creditsApplied = creditsApplied
        self.creditAmount = creditAmount
        self.amountDue = amountDue
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.paymentLink = paymentLink
        self.paidAt = paidAt
        self.createdAt = createdAt
        self.lines = lines
    }

    /// The invoice in its next status; a move `InvoiceStatus.next` does not allow throws and changes nothing.
    public mutating func move(to next: InvoiceStatus) throws(InvoiceTransitionError) {
        status = try status.moved(to: next)
    }
}

/// One row of `billing.invoices`: ours and Stripe Billing's, told apart by `source`.
public struct InvoiceSummary: Sendable, Equatable {
    public var id: String
    public var source: String
    public var number: String?
    public var status: String?
    public var amountDue: Int
    public var currency: String?
    public var periodStart: Date?
    public var periodEnd: Date?
    public var hostedURL: String?
    public var createdAt: Date
}

public struct PendingCharge: Sendable, Equatable {
    public var id: UUID
    public var description: String
    public var amount: Int
    public var currency: String
    public var idempotencyKey: String
    public var invoiceID: UUID?
}

public struct StripeInvoiceRecord: Sendable, Equatable {
    public var invoiceID: String
    public var stripeSubscriptionID: String?
    public var number: String?
    public var status: String?
    public var amountDue: Int
    public var amountPaid: Int
    public var amountRemaining: Int
    public var currency: String?
    public var hostedInvoiceURL: String?
    public var attemptCount: Int
    public var nextPaymentAttempt: Date?
    public var paymentProblem: String?
    public var periodStart: Date?
    public var periodEnd: Date?
    public var lastEventAt: Date
    public var createdAt: Date

    public init(
        invoiceID: String, stripeSubscriptionID: String?, number: String?, status: String?, amountDue: Int, amountPaid: Int,
        amountRemaining: Int, currency: String?, hostedInvoiceURL: String?, attemptCount: Int, nextPaymentAttempt: Date?,
        paymentProblem: String?, periodStart: Date?, periodEnd: Date?, lastEventAt: Date, createdAt: Date
    ) {
        self.invoiceID = invoiceID
        self.stripeSubscriptionID = stripeSubscriptionID
        self.number = number
        self.status = status
        self.amountDue = amountDue
        self.amountPaid = amountPaid
        self.amountRemaining = amountRemaining
        self.currency = currency
        self.hostedInvoiceURL = hostedInvoiceURL
        self.attemptCount = attemptCount
        self.nextPaymentAttempt = nextPaymentAttempt
        self.paymentProblem = paymentProblem
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.lastEventAt = lastEventAt
        self.createdAt = createdAt
    }
}

/// The tenant's invoices: ours (with their charges and attempts) and Stripe Billing's.
public struct InvoiceStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// The tenant's invoices: ours (with their charges and attempts) and Stripe Billing's.
    public var invoices: InvoiceStore { InvoiceStore(transaction: self) }
}

extension InvoiceStore {
    static let columns = """
        SELECT invoice_id, number, stripe_subscription_id, period_start, period_end, status, currency, subtotal, credits_applied,
               credit_amount, amount_due, attempts, next_attempt_at, payment_link, paid_at, created_at, first_failed_at, overdue_at
        FROM billing.invoices
        """

    /// Records a charge for the next invoice, once per key; returns it (the first one for a repeated key).
    public func addCharge(id: UUID, description: String, amount: Int, currency: String, key: String, now: Date) async throws -> PendingCharge {
        try await connection.query("""
            INSERT INTO billing.invoice_charges (tenant_id, charge_id, description, amount, currency, idempotency_key, created_at)
            VALUES (\(tenant), \(id), \(description), \(amount), \(currency), \(key), \(now))
            ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
            """, logger: logger)
        let rows = try await connection.query("""
            SELECT charge_id, description, amount, currency, idempotency_key, invoice_id FROM billing.invoice_charges
            WHERE tenant_id = \(tenant) AND idempotency_key = \(key)
            """, logger: logger)
        for try await (id, description, amount, currency, key, invoice) in rows.decode((UUID, String, Int, String, String, UUID?).self) {
            return PendingCharge(id: id, description: description, amount: amount, currency: currency, idempotencyKey: key, invoiceID: invoice)
        }
        throw StoreError.database(operation: "add charge", message: "the charge was not recorded", sqlState: nil)
    }

    /// Charges no invoice carries yet, oldest first, locked.
    public func pendingCharges(upTo time: Date) async throws -> [PendingCharge] {
        let rows = try await connection.query("""
            SELECT charge_id, description, amount, currency, idempotency_key, invoice_id FROM billing.invoice_charges
            WHERE tenant_id = \(tenant) AND invoice_id IS NULL AND created_at <= \(time)
            ORDER BY created_at, charge_id FOR UPDATE
            """, logger: logger)
        var charges: [PendingCharge] = []
        for try await (id, description, amount, currency, key, invoice) in rows.decode((UUID, String, Int, String, String, UUID?).self) {
            charges.append(PendingCharge(id: id, description: description, amount: amount, currency: currency, idempotencyKey: key, invoiceID: invoice))
        }
        return charges
    }

    /// The number of the tenant's oldest overdue invoice (any subscription's), if it has one.
    public func oldestOverdue() async throws -> String? {
        try await connection.first("""
            SELECT number FROM billing.invoices WHERE tenant_id = \(tenant) AND status IN \(unescaped: InvoiceStatus.overdueSQL)
            ORDER BY overdue_at, number LIMIT 1
            """, as: String.self, logger: logger)
    }

    public func exists(subscriptionID: String, periodStart: Date) async throws -> Bool {
        try await connection.first("""
            SELECT count(*)::int FROM billing.invoices
            WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(subscriptionID) AND period_start = \(periodStart)
            """, as: Int.self, logger: logger) == 1
    }

    /// The next number of the platform's gapless sequence, taken in this transaction.
    public func nextNumber() async throws -> String {
        guard let number = try await connection.first("SELECT billing.next_invoice_number()", as: String.self, logger: logger) else {
            throw StoreError.database(operation: "invoice number", message: "no number", sqlState: nil)
        }
        return number
    }

    public func insert(_ invoice: InvoiceRecord, charges: [UUID]) async throws {
        try await connection.query("""
            INSERT INTO billing.invoices (tenant_id, invoice_id, number, stripe_subscription_id, period_start, period_end, status, currency,
                subtotal, credits_applied, credit_amount, amount_due, next_attempt_at, paid_at, created_at)
            VALUES (\(tenant), \(invoice.id), \(invoice.number), \(invoice.subscriptionID), \(invoice.periodStart), \(invoice.periodEnd),
                \(invoice.status.rawValue), \(invoice.currency), \(invoice.subtotal), \(invoice.creditsApplied), \(invoice.creditAmount),
                \(invoice.amountDue), \(invoice.nextAttemptAt), \(invoice.paidAt), \(invoice.createdAt))
            """, logger: logger)
        for (index, line) in invoice.lines.enumerated() {
            try await connection.query("""
                INSERT INTO billing.invoice_lines (tenant_id, invoice_id, line_no, description, quantity, unit_amount, amount)
                VALUES (\(tenant), \(invoice.id), \(index + 1), \(line.description), \(line.quantity), \(line.unitAmount), \(line.amount))
                """, logger: logger)
        }
        if !charges.isEmpty {
            try await connection.query("""
                UPDATE billing.invoice_charges SET invoice_id = \(invoice.id) WHERE tenant_id = \(tenant) AND charge_id = ANY(\(charges))
                """, logger: logger)
        }
    }

    /// One of this server's invoices with its lines; locked unless only read (the hosted view).
    public func find(_ id: UUID, lock: Bool = true) async throws -> InvoiceRecord? {
        let rows = try await connection.query("""
            \(unescaped: Self.columns) WHERE tenant_id = \(tenant) AND invoice_id = \(id) \(unescaped: lock ? "FOR UPDATE" : "")
            """, logger: logger)
        guard var invoice = try await decodeInvoices(rows).first else { return nil }
        let lines = try await connection.query("""
            SELECT description, quantity, unit_amount FROM billing.invoice_lines WHERE tenant_id = \(tenant) AND invoice_id = \(id)
            ORDER BY line_no
            """, logger: logger)
        for try await (description, quantity, unit) in lines.decode((String, Int, Int).self) {
            invoice.lines.append(.init(description: description, quantity: quantity, unitAmount: unit))
        }
        return invoice
    }

    func decodeInvoices(_ rows: PostgresRowSequence) async throws -> [InvoiceRecord] {
        var invoices: [InvoiceRecord] = []
        for try await row in rows {
            let cells = row.makeRandomAccess()
            var invoice = InvoiceRecord(
                id: try cells[0].decode(UUID.self), number: try cells[1].decode(String.self),
                subscriptionID: try cells[2].decode(String.self), periodStart: try cells[3].decode(Date.self),
                periodEnd: try cells[4].decode(Date.self), status: InvoiceStatus(rawValue: try cells[5].decode(String.self)) ?? .open, currency: try cells[6].decode(String.self),
                subtotal: try cells[7].decode(Int.self), creditsApplied: try cells[8].decode(Int.self),
                creditAmount: try cells[9].decode(Int.self), amountDue: try cells[10].decode(Int.self), attempts: try cells[11].decode(Int.self),
                nextAttemptAt: try cells[12].decode(Date?.self), paymentLink: try cells[13].decode(String?.self),
                paidAt: try cells[14].decode(Date?.self), createdAt: try cells[15].decode(Date.self), lines: [])
            invoice.firstFailedAt = try cells[16].decode(Date?.self)
            invoice.overdueAt = try cells[17].decode(Date?.self)
            invoices.append(invoice)
        }
        return invoices
    }

    /// Invoices to collect by `at` (open and due) or to write off (overdue since before `overdueBefore`), locked.
    public func toCollect(at: Date, overdueBefore: Date) async throws -> [InvoiceRecord] {
        let rows = try await connection.query("""
            \(unescaped: Self.columns)
            WHERE tenant_id = \(tenant) AND ((status IN \(unescaped: InvoiceStatus.collectibleSQL) AND next_attempt_at <= \(at))
                  OR (status IN \(unescaped: InvoiceStatus.overdueSQL) AND overdue_at <= \(overdueBefore)))
            ORDER BY created_at FOR UPDATE
            """, logger: logger)
        return try await decodeInvoices(rows)
    }

    public func recordAttempt(
        invoice: UUID, attempt: Int, paymentIntentID: String?, outcome: String, failure: String?, at: Date
    ) async throws {
        try await connection.query("""
            INSERT INTO billing.invoice_attempts (tenant_id, invoice_id, attempt, payment_intent_id, outcome, failure, created_at)
            VALUES (\(tenant), \(invoice), \(attempt), \(paymentIntentID), \(outcome), \(failure), \(at))
            ON CONFLICT (tenant_id, invoice_id, attempt) DO NOTHING
            """, logger: logger)
    }

    /// Writes an invoice's collection state.
    public func updateCollection(_ invoice: InvoiceRecord, writtenOffAt: Date? = nil) async throws {
        try await connection.query("""
            UPDATE billing.invoices SET status = \(invoice.status.rawValue), attempts = \(invoice.attempts), next_attempt_at = \(invoice.nextAttemptAt),
                first_failed_at = \(invoice.firstFailedAt), overdue_at = \(invoice.overdueAt), payment_link = \(invoice.paymentLink),
                paid_at = \(invoice.paidAt), written_off_at = coalesce(\(writtenOffAt), written_off_at)
            WHERE tenant_id = \(tenant) AND invoice_id = \(invoice.id)
            """, logger: logger)
    }

    /// What the subscription's unpaid invoices say its status is: `unpaid` when one is overdue, `active` otherwise.
    public func subscriptionStatus(_ subscriptionID: String) async throws -> SubscriptionStatus {
        let overdue = try await connection.first("""
            SELECT count(*)::int FROM billing.invoices
            WHERE tenant_id = \(tenant) AND stripe_subscription_id = \(subscriptionID) AND status IN \(unescaped: InvoiceStatus.overdueSQL)
            """, as: Int.self, logger: logger) ?? 0
        return overdue > 0 ? .unpaid : .active
    }

    /// Open invoices that were waiting for a card are due now (one was just saved). Returns how many.
    public func rescheduleWaitingForCard(at: Date) async throws -> Int {
        try await connection.first("""
            WITH u AS (UPDATE billing.invoices SET next_attempt_at = \(at)
                       WHERE tenant_id = \(tenant) AND status IN \(unescaped: InvoiceStatus.openSQL) AND next_attempt_at IS NULL RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) ?? 0
    }

    /// The outcomes of an invoice's collection attempts, in order.
    public func attempts(of invoice: UUID) async throws -> [(attempt: Int, outcome: String, paymentIntentID: String?)] {
        let rows = try await connection.query("""
            SELECT attempt, outcome, payment_intent_id FROM billing.invoice_attempts
            WHERE tenant_id = \(tenant) AND invoice_id = \(invoice) ORDER BY attempt
            """, logger: logger)
        var found: [(Int, String, String?)] = []
        for try await (attempt, outcome, intent) in rows.decode((Int, String, String?).self) { found.append((attempt, outcome, intent)) }
        return found
    }

    /// Ours and Stripe Billing's invoices, newest first, after the keyset `(createdAt, id)` when given.
    public func summaries(before: (Date, String)?, limit: Int) async throws -> [InvoiceSummary] {
        let rows = try await connection.query("""
            SELECT id, source, number, status, amount_due, currency, period_start, period_end, hosted_url, created_at FROM (
                SELECT invoice_id::text AS id, 'billing' AS source, number, status, amount_due, currency, period_start, period_end,
                       NULL::text AS hosted_url, created_at
                FROM billing.invoices WHERE tenant_id = \(tenant)
                UNION ALL
                SELECT invoice_id, 'stripe', number, status, amount_due, currency, period_start, period_end, hosted_invoice_url, created_at
                FROM billing.stripe_invoices WHERE tenant_id = \(tenant)
            ) i
            WHERE \(before?.0)::timestamptz IS NULL OR (created_at, id) < (\(before?.0)::timestamptz, \(before?.1)::text)
            ORDER BY created_at DESC, id DESC
            LIMIT \(limit)
            """, logger: logger)
        var summaries: [InvoiceSummary] = []
        for try await (id, source, number, status, due, currency, start, end, url, created)
            in rows.decode((String, String, String?, String?, Int, String?, Date?, Date?, String?, Date).self)
        {
            summaries.append(InvoiceSummary(
                id: id, source: source, number: number, status: status, amountDue: due, currency: currency, periodStart: start,
                periodEnd: end, hostedURL: url, createdAt: created))
        }
        return summaries
    }

    /// When the invoice's newest applied event was created, and its status; nil for an invoice new to us. Locks it.
    public func lockStripeInvoice(_ id: String) async throws -> (Date, String?)? {
        let rows = try await connection.query(
            "SELECT last_event_at, status FROM billing.stripe_invoices WHERE tenant_id = \(tenant) AND invoice_id = \(id) FOR UPDATE",
            logger: logger)
        for try await (last, status) in rows.decode((Date, String?).self) { return (last, status) }
        return nil
    }

    public func saveStripeInvoice(_ record: StripeInvoiceRecord, now: Date) async throws {
        try await connection.query("""
            INSERT INTO billing.stripe_invoices (tenant_id, invoice_id, stripe_subscription_id, number, status, amount_due, amount_paid,
                amount_remaining, currency, hosted_invoice_url, attempt_count, next_payment_attempt, payment_problem, period_start,
                period_end, last_event_at, created_at, updated_at)
            VALUES (\(tenant), \(record.invoiceID), \(record.stripeSubscriptionID), \(record.number), \(record.status), \(record.amountDue),
                \(record.amountPaid), \(record.amountRemaining), \(record.currency), \(record.hostedInvoiceURL), \(record.attemptCount),
                \(record.nextPaymentAttempt), \(record.paymentProblem), \(record.periodStart), \(record.periodEnd), \(record.lastEventAt),
                \(record.createdAt), \(now))
            ON CONFLICT (tenant_id, invoice_id) DO UPDATE SET stripe_subscription_id = EXCLUDED.stripe_subscription_id,
                number = EXCLUDED.number, status = EXCLUDED.status, amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid,
                amount_remaining = EXCLUDED.amount_remaining, currency = EXCLUDED.currency,
                hosted_invoice_url = EXCLUDED.hosted_invoice_url, attempt_count = EXCLUDED.attempt_count,
                next_payment_attempt = EXCLUDED.next_payment_attempt, payment_problem = EXCLUDED.payment_problem,
                period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, last_event_at = EXCLUDED.last_event_at,
                updated_at = EXCLUDED.updated_at
            """, logger: logger)
    }

    /// The payment an invoice was paid with, once both are known.
    /// The payment problem recorded for a Stripe invoice (`payment_failed`, `overdue`, ...), if any.
    public func stripeInvoiceProblem(_ id: String) async throws -> String? {
        try await connection.first(
            "SELECT payment_problem FROM billing.stripe_invoices WHERE tenant_id = \(tenant) AND invoice_id = \(id)",
            as: String?.self, logger: logger) ?? nil
    }
}
