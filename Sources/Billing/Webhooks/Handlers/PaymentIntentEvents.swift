import BillingStore
import Foundation
import StripeAPI

extension StripeEventProcessor {
    /// `payment_intent.processing`: an asynchronous payment is under way; nothing is credited or paid until it
    /// succeeds.
    func paymentIntentProcessing(_ intent: PaymentIntent, _ context: EventContext) async throws -> EventDisposition {
        try await context.audit("payment.processing", before: nil, after: [
            "paymentIntent": intent.id, "amount": String(intent.amount), "currency": intent.currency,
            "purpose": intent.metadata?["purpose"] ?? "other",
        ])
        return context.processed("processing: credited or paid only when it succeeds")
    }

    /// `payment_intent.canceled`: a top-up whose payment was canceled fails (its credits were never granted); an
    /// invoice attempt's is left to dunning, which schedules the next attempt.
    func paymentIntentCanceled(_ intent: PaymentIntent, _ context: EventContext) async throws -> EventDisposition {
        let reason = "the payment was canceled (\(intent.cancellationReason ?? "no reason given"))"
        if intent.metadata?["purpose"] == "credit_topup",
           let topUp = try await context.transaction.checkout.lockTopUp(
               id: intent.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)), sessionID: nil, paymentIntentID: intent.id),
           topUp.status == "pending"
        {
            try await context.transaction.checkout.updateTopUp(topUp.id, status: "failed", paymentIntentID: intent.id, lastFailure: reason)
            try await context.audit("topup.failed", before: ["topUp": topUp.id.lowercased, "status": topUp.status],
                                    after: ["topUp": topUp.id.lowercased, "status": "failed", "failure": reason])
            return context.processed()
        }
        try await context.audit("payment.canceled", before: nil, after: ["paymentIntent": intent.id, "failure": reason])
        return context.processed()
    }
}
