import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

extension StripeEventProcessor {
    // MARK: Checkout

    /// `checkout.session.completed` and `checkout.session.async_payment_succeeded`: a paid top-up is credited; a
    /// subscription checkout links its subscription.
    func checkoutCompleted(_ session: CheckoutSession, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        try await transaction.markSessionComplete(session.id)
        if let customer = session.customer?.id, try await transaction.linkCustomerIfUnset(customer) {
            try await context.audit("customer.linked", before: nil, after: ["customer": customer, "session": session.id])
            context.scope.wakeUnresolved([customer])
        }
        switch session.mode {
        case "subscription":
            return try await linkSubscription(session, context)
        case "payment" where session.metadata?["purpose"] == "credit_topup":
            guard session.paymentStatus == "paid" else {
                return context.processed("top-up session \(session.id) is \(session.paymentStatus ?? "unpaid"); waiting for the payment")
            }
            guard let amount = session.amountTotal, let currency = session.currency else {
                return context.rejected("paid top-up session \(session.id) has no amount_total or currency")
            }
            return try await fulfilTopUp(
                id: session.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: session.id,
                paymentIntentID: session.paymentIntent?.id, amount: amount, currency: currency, context)
        case "setup":
            // The card itself arrives with setup_intent.succeeded; reading the SetupIntent here covers that event
            // arriving late (or being lost until reconciliation).
            guard let setupID = session.setupIntent?.id, let stripe else {
                return context.processed("the card is recorded by setup_intent.succeeded")
            }
            let intent: SetupIntent
            do {
                intent = try await stripe.retrieveSetupIntent(setupID)
            } catch {
                throw RetryLater("could not read \(setupID) from Stripe: \(error)")
            }
            guard intent.status == "succeeded" else { return context.processed("setup intent \(setupID) is \(intent.status)") }
            return try await setupSucceeded(intent, context)
        default:
            return context.ignored("checkout session \(session.id) in \(session.mode) mode needs nothing here")
        }
    }

    /// `setup_intent.succeeded`: the saved card becomes the tenant's default for the invoices this server charges
    /// (and the customer's default at Stripe). A card saved later is never replaced by an earlier one.
    func setupSucceeded(_ intent: SetupIntent, _ context: EventContext) async throws -> EventDisposition {
        guard let method = intent.paymentMethod?.id else {
            return context.rejected("setup intent \(intent.id) succeeded without a payment method")
        }
        let savedAt = Self.date(intent.created) ?? context.created
        if try await context.transaction.defaultPaymentMethod() == method {
            return context.processed("\(method) is recorded already")
        }
        guard try await context.transaction.setDefaultPaymentMethod(method, savedAt: savedAt) else {
            return context.stale("a card saved later than \(intent.id)'s is recorded already")
        }
        if let stripe, let customer = intent.customer?.id {
            do {
                _ = try await stripe.setDefaultPaymentMethod(
                    customer: customer, paymentMethod: method, idempotencyKey: "default-pm:\(customer):\(method)")
            } catch {
                throw RetryLater("could not make \(method) the default of \(customer) at Stripe: \(error)")
            }
        }
        try await context.audit("payment_method.saved", before: nil, after: ["paymentMethod": method, "setupIntent": intent.id])
        // Invoices that waited for a card are due now.
        _ = try await context.transaction.rescheduleInvoicesWaitingForCard(at: context.created)
        return context.processed()
    }

    /// `checkout.session.expired` and `checkout.session.async_payment_failed`: the session's pending top-up is closed.
    func checkoutClosed(_ session: CheckoutSession, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        let expired = context.event.type == "checkout.session.expired"
        if expired {
            try await transaction.markSessionExpired(session.id)
        }
        guard let topUp = try await transaction.lockTopUp(id: nil, sessionID: session.id, paymentIntentID: nil) else {
            return context.processed()
        }
        guard topUp.status == "pending" else {
            return context.processed("top-up \(topUp.id) is \(topUp.status) already")
        }
        let status = expired ? "expired" : "failed"
        try await transaction.updateTopUp(
            topUp.id, status: status, lastFailure: expired ? nil : "the asynchronous payment failed")
        try await context.audit("topup.\(status)", before: ["topUp": topUp.id.lowercased, "status": topUp.status],
                                after: ["topUp": topUp.id.lowercased, "status": status])
        return context.processed()
    }

    // MARK: Top-ups

    /// Credits exactly the credits recorded on the top-up, once (the ledger's source key), whichever of the
    /// session, PaymentIntent or async-payment events arrives first. An amount that does not match is flagged.
    func fulfilTopUp(
        id: UUID?, sessionID: String?, paymentIntentID: String?, chargeID: String? = nil, amount: Int, currency: String,
        _ context: EventContext
    ) async throws -> EventDisposition {
        let transaction = context.transaction
        guard let topUp = try await transaction.lockTopUp(id: id, sessionID: sessionID, paymentIntentID: paymentIntentID) else {
            return context.rejected(
                "no top-up of this tenant matches \(id?.lowercased ?? "-") / \(sessionID ?? "-") / \(paymentIntentID ?? "-")")
        }
        if topUp.status == "flagged" {
            return context.processed("top-up \(topUp.id) is flagged; an operator settles it")
        }
        let expected = Money(amount: topUp.amount, currency: topUp.currency)
        if case .mismatch(let flag) = CreditSettlement.topUp(
            credits: topUp.credits, expected: expected, paid: Money(amount: amount, currency: currency)) {
            logger.error("top-up amount mismatch; not credited", metadata: [
                "tenant": "\(context.tenant)", "topUp": "\(topUp.id)", "event": "\(context.event.id)", "flag": "\(flag)",
            ])
            if topUp.status == "paid" {
                // Credited already on a matching event: this one disagrees, so say so and change nothing.
                return context.processed("not credited again: \(flag)")
            }
            try await transaction.updateTopUp(topUp.id, status: "flagged", paymentIntentID: paymentIntentID, flag: flag)
            try await context.audit("topup.flagged", before: ["topUp": topUp.id.lowercased, "status": topUp.status],
                                    after: ["topUp": topUp.id.lowercased, "status": "flagged", "flag": flag])
            return context.processed("flagged, not credited: \(flag)")
        }
        // Lock order in every money handler: top-up, then the payment's id and row, then the balance (taken by the
        // ledger append).
        if let paymentIntentID = paymentIntentID ?? topUp.paymentIntentID {
            try await transaction.lockPaymentKey(paymentIntentID)
            _ = try await transaction.lockPayment(paymentIntentID)
        }
        let before = try await transaction.creditBalance()
        let balance = try await transaction.appendCredits(
            source: "topup:\(topUp.id.lowercased)", kind: "topup", amount: topUp.credits,
            reason: "top-up of \(topUp.credits) credits (\(Money(amount: amount, currency: currency).formatted))", stripeEvent: context.event.id)
        if topUp.status != "paid" || topUp.paymentIntentID == nil {
            try await transaction.updateTopUp(topUp.id, status: "paid", paymentIntentID: paymentIntentID, paidAt: context.created)
        }
        if let balance {
            try await notifier.creditsChanged(
                transaction, available: balance, frozen: before.frozen, change: topUp.credits, kind: "topup",
                reason: "top-up of \(topUp.credits) credits")
            try await context.audit(
                "credits.topped_up",
                before: ["available": String(before.available), "topUp": topUp.id.lowercased],
                after: ["available": String(balance), "topUp": topUp.id.lowercased, "credits": String(topUp.credits)])
        }
        if let paymentIntentID = paymentIntentID ?? topUp.paymentIntentID {
            // The payment that bought them: recorded now if no payment event came first, and settled against any
            // refund or dispute that did.
            _ = try await recordPayment(
                intentID: paymentIntentID, chargeID: chargeID, amount: amount, refunded: nil, currency: currency,
                metadata: ["purpose": "credit_topup", "top_up_id": topUp.id.lowercased], created: context.created,
                topUp: (topUp.id, topUp.credits), context)
        }
        return context.processed(balance == nil ? "credited before" : nil)
    }

    // MARK: Payments

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
              let topUp = try await context.transaction.lockTopUp(
                id: intent.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: nil, paymentIntentID: intent.id)
        else {
            try await context.audit("payment.failed", before: nil, after: ["paymentIntent": intent.id, "failure": failure])
            try await notifier.paymentFailed(context.transaction, [
                "paymentIntentId": .string(intent.id), "amount": .integer(intent.amount), "currency": .string(intent.currency),
                "failure": .string(failure), "purpose": .string(intent.metadata?["purpose"] ?? "other"),
            ])
            return context.processed()
        }
        try await context.transaction.updateTopUp(topUp.id, status: topUp.status, paymentIntentID: intent.id, lastFailure: failure)
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
           let found = try await transaction.lockTopUp(
            id: metadata["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: nil, paymentIntentID: intentID),
           found.status == "paid" || metadata["top_up_id"] != nil
        {
            topUp = found.status == "paid" ? (found.id, found.credits) : (found.id, 0)
        }
        guard let key = intentID ?? chargeID else { throw RetryLater("a payment without a PaymentIntent or charge id") }
        let purpose = topUp != nil || metadata["purpose"] == "credit_topup" ? "credit_topup"
            : metadata["invoice_id"] != nil ? "invoice" : "other"
        try await transaction.lockPaymentKey(key)
        var existing = try await transaction.lockPayment(key)
        if existing == nil, let chargeID { existing = try await transaction.lockPayment(chargeID) }
        guard var payment = existing else {
            var payment = PaymentRecord(
                paymentID: key, paymentIntentID: intentID, chargeID: chargeID, amount: amount,
                amountRefunded: min(amount, refunded ?? 0), chargeAmountRefunded: refunded ?? 0,
                currency: currency.lowercased(), purpose: purpose, topUpID: topUp?.id, stripeInvoiceID: metadata["invoice_id"],
                credits: topUp?.credits ?? 0, createdAt: created)
            payment = try await settle(payment, context)
            try await transaction.insertPayment(payment)
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
        let refunds = try await context.transaction.refundTotals(paymentID: payment.paymentID)
        payment.amountRefunded = min(payment.amount, max(0, payment.chargeAmountRefunded - refunds.failed, refunds.standing))
        payment = try await settle(payment, context)
        if payment != before {
            try await context.transaction.updatePayment(payment, now: now())
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
        let applied = try await context.transaction.appendCredits(
            source: "\(kind):\(payment.paymentID):\(context.event.id):\(target.takenBack)/\(target.frozen)", kind: kind,
            amount: change.availableChange,
            frozenDelta: change.frozenChange, reason: "\(reason) (payment \(payment.paymentID))", stripeEvent: context.event.id)
        guard let available = applied else { return payment }
        try await notifier.creditsChanged(
            context.transaction, available: available, frozen: try await context.transaction.creditBalance().frozen,
            change: change.availableChange, frozenChange: change.frozenChange, kind: kind, reason: reason)
        payment.creditsTakenBack = target.takenBack
        payment.creditsFrozen = target.frozen
        return payment
    }

    // MARK: Refunds

    /// `charge.refunded`: the refunded amount (cumulative, so a late event never lowers it) and the refunded share
    /// of a top-up's credits taken back.
    func chargeRefunded(_ charge: Charge, _ context: EventContext) async throws -> EventDisposition {
        let payment = try await recordPayment(
            intentID: charge.paymentIntent?.id, chargeID: charge.id, amount: charge.amount, refunded: charge.amountRefunded,
            currency: charge.currency, metadata: charge.metadata ?? [:], created: Self.date(charge.created) ?? context.created,
            topUp: nil, context)
        var recorded = false
        for refund in charge.refunds?.data ?? [] {
            recorded = try await recordRefund(refund, payment: payment, context) || recorded
        }
        if recorded { _ = try await restate(payment, from: payment, context) }
        return context.processed()
    }

    /// `refund.created`, `refund.updated`, `refund.failed`, `charge.refund.updated`: the refund itself, against its
    /// payment. A new refund takes its share of the credits back (if `charge.refunded` has not already); a refund that
    /// fails gives it back.
    func refundChanged(_ refund: Refund, _ context: EventContext) async throws -> EventDisposition {
        guard let reference = refund.paymentIntent?.id ?? refund.charge?.id,
              let payment = try await context.transaction.lockPayment(reference)
        else {
            // Waits, never parked, until the payment's own event arrives (which wakes it).
            return .unresolved(
                note: "refund \(refund.id) is for a payment not recorded yet",
                waitingFor: [refund.paymentIntent?.id, refund.charge?.id].compactMap { $0 })
        }
        try await recordRefund(refund, payment: payment, context)
        // Even when the refund was known (billing.refund records its own at once), its payment may not count it yet.
        let after = try await restate(payment, from: payment, context)
        if after.creditsTakenBack < payment.creditsTakenBack {
            logger.notice("refund failed; its credits given back", metadata: [
                "refund": "\(refund.id)", "payment": "\(payment.paymentID)",
                "credits": "\(payment.creditsTakenBack - after.creditsTakenBack)",
            ])
        }
        return context.processed()
    }

    /// Records the refund (its status only ever moves forward); true when it is new or became failed or canceled,
    /// which may change what counts as refunded.
    @discardableResult
    func recordRefund(_ refund: Refund, payment: PaymentRecord, _ context: EventContext) async throws -> Bool {
        let status = refund.status ?? "succeeded"
        let (before, after) = try await context.transaction.upsertRefund(
            id: refund.id, paymentID: payment.paymentID, amount: refund.amount, currency: refund.currency ?? payment.currency,
            status: status, reason: refund.metadata?["reason"] ?? refund.reason, failureReason: refund.failureReason,
            createdAt: Self.date(refund.created) ?? context.created, now: now(), requestKey: refund.metadata?["billing_request"])
        guard let before else {
            try await context.audit("refund.recorded", before: nil, after: [
                "refund": refund.id, "payment": payment.paymentID, "amount": String(refund.amount), "status": after,
            ])
            return true
        }
        guard before != after else { return false }
        var fields = ["refund": refund.id, "payment": payment.paymentID, "amount": String(refund.amount), "status": after]
        if RefundRecord.isFinal(after), let failure = refund.failureReason { fields["failureReason"] = failure }
        try await context.audit(RefundRecord.isFinal(after) ? "refund.\(after)" : "refund.updated", before: [
            "refund": refund.id, "status": before,
        ], after: fields)
        return RefundRecord.isFinal(after)
    }

    // MARK: Disputes

    /// `charge.dispute.*`: an open dispute freezes the credits its payment bought; won releases them, lost takes them.
    func disputeChanged(_ dispute: Dispute, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        guard let reference = dispute.paymentIntent?.id ?? dispute.charge?.id,
              var payment = try await transaction.lockPayment(reference)
        else {
            return .unresolved(
                note: "dispute \(dispute.id) is about a payment not recorded yet",
                waitingFor: [dispute.paymentIntent?.id, dispute.charge?.id].compactMap { $0 })
        }
        let existing = try await transaction.lockDispute(dispute.id)
        if let existing, context.created < existing.lastEventAt {
            return context.stale("an event of \(existing.lastEventAt) about \(dispute.id) was applied already")
        }
        if let existing, existing.closedAt != nil, context.event.type != "charge.dispute.closed" {
            return context.stale("dispute \(dispute.id) is closed (\(existing.status))")
        }
        let outcome = DisputeOutcome.of(stripeStatus: dispute.status, closing: context.event.type == "charge.dispute.closed")
        let closed = outcome != .open
        try await transaction.saveDispute(DisputeRecord(
            disputeID: dispute.id, paymentID: payment.paymentID, amount: dispute.amount, currency: dispute.currency,
            reason: dispute.reason, status: dispute.status, openedAt: existing?.openedAt ?? Self.date(dispute.created) ?? context.created,
            closedAt: closed ? context.created : nil, lastEventAt: context.created))
        let before = payment
        payment.disputeStatus = outcome
        payment = try await settle(payment, context)
        try await transaction.updatePayment(payment, now: now())
        if before != payment || existing?.status != dispute.status {
            try await context.audit(
                existing == nil ? "dispute.opened" : closed ? "dispute.closed" : "dispute.updated",
                before: existing.map { ["dispute": $0.disputeID, "status": $0.status] }.map { $0.merging(Self.auditFields(before)) { $1 } },
                after: ["dispute": dispute.id, "status": dispute.status].merging(Self.auditFields(payment)) { $1 })
        }
        return context.processed()
    }

    // MARK: Invoices

    /// `invoice.*`: Stripe Billing's invoice for the tenant, with its payment problem if any, linked to its payment.
    func invoiceChanged(_ invoice: Invoice, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        if let (last, status) = try await transaction.lockStripeInvoice(invoice.id) {
            if context.created < last {
                return context.stale("an event of \(last) about \(invoice.id) was applied already")
            }
            // Stripe sends finalized, paid and payment_succeeded in one second: an invoice never goes back.
            if context.created == last, Self.invoiceRank(invoice.status) < Self.invoiceRank(status) {
                return context.stale("\(invoice.id) is \(status ?? "-") already; an event of the same second says \(invoice.status ?? "-")")
            }
        }
        let problem: String? = switch context.event.type {
        case "invoice.payment_failed": "payment_failed"
        case "invoice.payment_action_required": "action_required"
        case "invoice.overdue": "overdue"
        case "invoice.finalization_failed": "finalization_failed"
        default: invoice.status == "open" ? try await transaction.stripeInvoiceProblem(invoice.id) : nil
        }
        try await transaction.saveStripeInvoice(StripeInvoiceRecord(
            invoiceID: invoice.id, stripeSubscriptionID: invoice.subscriptionID, number: invoice.number, status: invoice.status,
            amountDue: invoice.amountDue ?? 0, amountPaid: invoice.amountPaid ?? 0, amountRemaining: invoice.amountRemaining ?? 0,
            currency: invoice.currency, hostedInvoiceURL: invoice.hostedInvoiceURL, attemptCount: invoice.attemptCount ?? 0,
            nextPaymentAttempt: Self.date(invoice.nextPaymentAttempt), paymentProblem: problem,
            periodStart: Self.date(invoice.periodStart), periodEnd: Self.date(invoice.periodEnd), lastEventAt: context.created,
            createdAt: Self.date(invoice.created) ?? context.created), now: now())
        if invoice.status == "paid", let intent = invoice.paymentIntentID {
            try await transaction.linkPayment(intent, toInvoice: invoice.id)
        }
        if context.event.type == "invoice.payment_failed" || context.event.type == "invoice.payment_action_required" {
            try await notifier.paymentFailed(transaction, [
                "invoiceId": .string(invoice.id), "amount": .integer(invoice.amountDue ?? 0), "currency": .string(invoice.currency ?? ""),
                "failure": .string(problem ?? "payment_failed"), "purpose": "subscription",
                "hostedInvoiceUrl": invoice.hostedInvoiceURL.map(JSONValue.string) ?? .null,
            ])
        }
        try await context.audit(
            context.event.type, before: nil,
            after: ["invoice": invoice.id, "status": invoice.status ?? "", "amountDue": String(invoice.amountDue ?? 0),
                    "amountPaid": String(invoice.amountPaid ?? 0)].merging(problem.map { ["problem": $0] } ?? [:]) { $1 })
        return context.processed()
    }
}

extension StripeEventProcessor {
    /// How far along an invoice is: draft, open, then settled (paid, void, uncollectible).
    static func invoiceRank(_ status: String?) -> Int {
        switch status {
        case "draft": 0
        case "open": 1
        case "paid", "void", "uncollectible": 2
        default: 0
        }
    }
}

extension UUID {
    var lowercased: String { uuidString.lowercased() }
}
