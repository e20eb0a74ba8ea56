import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

extension StripeEventProcessor {
    /// `payment_intent.succeeded`: the payment is recorded; a top-up's credits follow.
    func paymentIntentSucceeded(_ intent: PaymentIntent, _ context: EventContext) async throws -> EventDisposition {
        let amount = intent.amountReceived ?? intent.amount
        if intent.metadata?["purpose"] == "invoice", let invoiceID = intent.metadata?["invoice_id"].flatMap(UUID.init(uuidString:)) {
            // One of our invoices, charged by dunning or paid through its payment link: paid, whatever its stage.
            guard try await notifier.invoicePaid(
                invoiceID, intent: intent.id, context.transaction, at: context.created, actor: context.actor, logger: logger)
            else {
                return context.rejected("payment \(intent.id) names invoice \(invoiceID), which this tenant does not have")
            }
            logger.notice("invoice paid", metadata: ["tenant": "\(context.tenant)", "invoice": "\(invoiceID)", "paymentIntent": "\(intent.id)"])
        }
        if intent.metadata?["purpose"] == "credit_topup" {
            return try await fulfilTopUp(
                id: intent.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: nil, paymentIntentID: intent.id,
                chargeID: intent.latestCharge?.id, amount: amount, currency: intent.currency, context)
        }
        _ = try await recordPayment(
            intentID: intent.id, chargeID: intent.latestCharge?.id, amount: amount, refunded: nil, currency: intent.currency,
            metadata: intent.metadata ?? [:], created: Self.date(intent.created) ?? context.created, topUp: nil, context)
        return context.processed()
    }

    /// `payment_intent.payment_failed`: the failure is recorded on its top-up (which stays payable in its session).
    func paymentIntentFailed(_ intent: PaymentIntent, _ context: EventContext) async throws -> EventDisposition {
        let failure = intent.lastPaymentError.map { [$0.code, $0.declineCode, $0.message].compactMap { $0 }.joined(separator: ": ") }
            ?? "the payment failed"
        if intent.metadata?["purpose"] == "invoice" {
            // Dunning recorded and announced this attempt already (or the payment link's page shows the decline).
            return context.processed("an invoice payment attempt; dunning handles it")
        }
        guard intent.metadata?["purpose"] == "credit_topup",
              let topUp = try await context.transaction.checkout.lockTopUp(
                id: intent.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: nil, paymentIntentID: intent.id)
        else {
            try await context.audit("payment.failed", before: nil, after: ["paymentIntent": intent.id, "failure": failure])
            try await notifier.paymentFailed(context.transaction, [
                "paymentIntentId": .string(intent.id), "amount": .integer(intent.amount), "currency": .string(intent.currency),
                "failure": .string(failure), "purpose": .string(intent.metadata?["purpose"] ?? "other"),
            ])
            return context.processed()
        }
        try await context.transaction.checkout.updateTopUp(topUp.id, status: topUp.status, paymentIntentID: intent.id, lastFailure: failure)
        try await notifier.paymentFailed(context.transaction, [
            "paymentIntentId": .string(intent.id), "amount": .integer(intent.amount), "currency": .string(intent.currency),
            "failure": .string(failure), "purpose": "credit_topup", "topUpId": .string(topUp.id.lowercased),
        ])
        try await context.audit("topup.payment_failed", before: nil,
                                after: ["topUp": topUp.id.lowercased, "paymentIntent": intent.id, "failure": failure])
        return context.processed()
    }

    /// `charge.succeeded`: every successful charge is a payment.
    func chargeSucceeded(_ charge: Charge, _ context: EventContext) async throws -> EventDisposition {
        _ = try await recordPayment(
            intentID: charge.paymentIntent?.id, chargeID: charge.id, amount: charge.amount, refunded: charge.amountRefunded,
            currency: charge.currency, metadata: charge.metadata ?? [:], created: Self.date(charge.created) ?? context.created,
            topUp: nil, context)
        return context.processed()
    }

    /// Records the payment or completes what is known of it, and settles its credits. Locks its top-up before the
    /// payment, as fulfilment does, so two events about one payment never deadlock; and holds the payment's id first,
    /// so two events about a new payment do not both insert it.
    func recordPayment(
        intentID: String?, chargeID: String?, amount: Int, refunded: Int?, currency: String, metadata: [String: String],
        created: Date, topUp known: (id: UUID, credits: Int)?, _ context: EventContext
    ) async throws -> PaymentRecord {
        let transaction = context.transaction
        var topUp = known
        if topUp == nil, intentID != nil || metadata["top_up_id"] != nil,
           let found = try await transaction.checkout.lockTopUp(
            id: metadata["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: nil, paymentIntentID: intentID),
           found.status == "paid" || metadata["top_up_id"] != nil
        {
            topUp = found.status == "paid" ? (found.id, found.credits) : (found.id, 0)
        }
        guard let key = intentID ?? chargeID else { throw RetryLater("a payment without a PaymentIntent or charge id") }
        let purpose = topUp != nil || metadata["purpose"] == "credit_topup" ? "credit_topup"
            : metadata["invoice_id"] != nil ? "invoice" : "other"
        try await transaction.payments.lockKey(key)
        var existing = try await transaction.payments.lock(key)
        if existing == nil, let chargeID { existing = try await transaction.payments.lock(chargeID) }
        guard var payment = existing else {
            var payment = PaymentRecord(
                paymentID: key, paymentIntentID: intentID, chargeID: chargeID, amount: amount,
                amountRefunded: min(amount, refunded ?? 0), chargeAmountRefunded: refunded ?? 0,
                currency: currency.lowercased(), purpose: purpose, topUpID: topUp?.id, stripeInvoiceID: metadata["invoice_id"],
                credits: topUp?.credits ?? 0, createdAt: created)
            payment = try await settle(payment, context)
            try await transaction.payments.insert(payment)
            try await context.audit("payment.recorded", before: nil, after: Self.auditFields(payment))
            // Refunds and disputes that arrived first were waiting for it.
            context.scope.wakeUnresolved([key, intentID, chargeID])
            return payment
        }
        let before = payment
        payment.paymentIntentID = payment.paymentIntentID ?? intentID
        payment.chargeID = payment.chargeID ?? chargeID
        // A late event never lowers the figure; a failed refund lowers what counts (see `restate`).
        payment.chargeAmountRefunded = max(payment.chargeAmountRefunded, refunded ?? 0)
        if payment.purpose == "other" { payment.purpose = purpose }
        payment.topUpID = payment.topUpID ?? topUp?.id
        if payment.credits == 0, let credits = topUp?.credits { payment.credits = credits }
        return try await restate(payment, from: before, context)
    }

    /// Works out what is refunded now, settles the credits accordingly, and saves and audits any change. What is
    /// refunded is the highest figure a charge event showed less the refunds that failed since, or what the refunds
    /// still standing add up to, whichever is more: the two agree once every event has arrived, in any order.
    func restate(_ payment: PaymentRecord, from before: PaymentRecord, _ context: EventContext) async throws -> PaymentRecord {
        var payment = payment
        let refunds = try await context.transaction.payments.refundTotals(paymentID: payment.paymentID)
        payment.amountRefunded = min(payment.amount, max(0, payment.chargeAmountRefunded - refunds.failed, refunds.standing))
        payment = try await settle(payment, context)
        if payment != before {
            try await context.transaction.payments.update(payment, now: now())
            try await context.audit("payment.updated", before: Self.auditFields(before), after: Self.auditFields(payment))
        }
        return payment
    }

    static func auditFields(_ payment: PaymentRecord) -> [String: String] {
        var fields = [
            "payment": payment.paymentID, "amount": String(payment.amount), "currency": payment.currency,
            "amountRefunded": String(payment.amountRefunded), "purpose": payment.purpose, "dispute": payment.disputeStatus.rawValue,
        ]
        if let charge = payment.chargeID { fields["charge"] = charge }
        if payment.credits > 0 {
            fields["credits"] = String(payment.credits)
            fields["creditsTakenBack"] = String(payment.creditsTakenBack)
            fields["creditsFrozen"] = String(payment.creditsFrozen)
        }
        return fields
    }

    /// Brings the credits a payment bought in line with its refunds and dispute: the refunded share (rounded up) is
    /// taken back, and given back if the refund fails; an open dispute freezes what remains, a won one releases it, a
    /// lost one takes it back. One ledger entry per change; the available balance may go negative (a debt that blocks
    /// consumption).
    func settle(_ payment: PaymentRecord, _ context: EventContext) async throws -> PaymentRecord {
        var payment = payment
        guard let change = CreditSettlement.settle(
            credits: payment.credits, amount: payment.amount, refunded: payment.amountRefunded, dispute: payment.disputeStatus,
            current: CreditSettlement.Position(takenBack: payment.creditsTakenBack, frozen: payment.creditsFrozen))
        else { return payment }
        let (kind, reason, target) = (change.kind.rawValue, change.kind.reason, change.target)
        // The target state in the name: one event may settle a payment twice (its charge, then its refunds), never
        // to the same state.
        let applied = try await context.transaction.credits.append(
            source: "\(kind):\(payment.paymentID):\(context.event.id):\(target.takenBack)/\(target.frozen)", kind: kind,
            amount: change.availableChange,
            frozenDelta: change.frozenChange, reason: "\(reason) (payment \(payment.paymentID))", stripeEvent: context.event.id)
        guard let available = applied else { return payment }
        try await notifier.creditsChanged(
            context.transaction, available: available, frozen: try await context.transaction.credits.balance().frozen,
            change: change.availableChange, frozenChange: change.frozenChange, kind: kind, reason: reason)
        payment.creditsTakenBack = target.takenBack
        payment.creditsFrozen = target.frozen
        return payment
    }
}
