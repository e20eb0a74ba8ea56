import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

extension StripeEventProcessor {
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
              let payment = try await context.transaction.payments.lock(reference)
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
        let (before, after) = try await context.transaction.payments.upsertRefund(
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
}
