import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

extension StripeEventProcessor {
    /// Credits exactly the credits recorded on the top-up, once (the ledger's source key), whichever of the
    /// session, PaymentIntent or async-payment events arrives first. An amount that does not match is flagged.
    func fulfilTopUp(
        id: UUID?, sessionID: String?, paymentIntentID: String?, chargeID: String? = nil, amount: Int, currency: String,
        _ context: EventContext
    ) async throws -> EventDisposition {
        let transaction = context.transaction
        guard let topUp = try await transaction.checkout.lockTopUp(id: id, sessionID: sessionID, paymentIntentID: paymentIntentID) else {
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
            try await transaction.checkout.updateTopUp(topUp.id, status: "flagged", paymentIntentID: paymentIntentID, flag: flag)
            try await context.audit("topup.flagged", before: ["topUp": topUp.id.lowercased, "status": topUp.status],
                                    after: ["topUp": topUp.id.lowercased, "status": "flagged", "flag": flag])
            return context.processed("flagged, not credited: \(flag)")
        }
        // Lock order in every money handler: top-up, then the payment's id and row, then the balance (taken by the
        // ledger append).
        if let paymentIntentID = paymentIntentID ?? topUp.paymentIntentID {
            try await transaction.payments.lockKey(paymentIntentID)
            _ = try await transaction.payments.lock(paymentIntentID)
        }
        let before = try await transaction.credits.balance()
        let balance = try await transaction.credits.append(
            source: "topup:\(topUp.id.lowercased)", kind: "topup", amount: topUp.credits,
            reason: "top-up of \(topUp.credits) credits (\(Money(amount: amount, currency: currency).formatted))", stripeEvent: context.event.id)
        if topUp.status != "paid" || topUp.paymentIntentID == nil {
            try await transaction.checkout.updateTopUp(topUp.id, status: "paid", paymentIntentID: paymentIntentID, paidAt: context.created)
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
}
