import BillingCore
import BillingStore
import Foundation
import JSONRPC
import StripeAPI

extension StripeEventProcessor {
    /// `charge.dispute.*`: an open dispute freezes the credits its payment bought; won releases them, lost takes them.
    func disputeChanged(_ dispute: Dispute, _ context: EventContext) async throws -> EventDisposition {
        let transaction = context.transaction
        guard let reference = dispute.paymentIntent?.id ?? dispute.charge?.id,
              var payment = try await transaction.payments.lock(reference)
        else {
            return .unresolved(
                note: "dispute \(dispute.id) is about a payment not recorded yet",
                waitingFor: [dispute.paymentIntent?.id, dispute.charge?.id].compactMap { $0 })
        }
        let existing = try await transaction.payments.lockDispute(dispute.id)
        if let existing, context.created < existing.lastEventAt {
            return context.stale("an event of \(existing.lastEventAt) about \(dispute.id) was applied already")
        }
        if let existing, existing.closedAt != nil, context.event.type != "charge.dispute.closed" {
            return context.stale("dispute \(dispute.id) is closed (\(existing.status))")
        }
        let outcome = DisputeOutcome.of(stripeStatus: dispute.status, closing: context.event.type == "charge.dispute.closed")
        let closed = outcome != .open
        try await transaction.payments.saveDispute(DisputeRecord(
            disputeID: dispute.id, paymentID: payment.paymentID, amount: dispute.amount, currency: dispute.currency,
            reason: dispute.reason, status: dispute.status, openedAt: existing?.openedAt ?? Self.date(dispute.created) ?? context.created,
            closedAt: closed ? context.created : nil, lastEventAt: context.created))
        let before = payment
        payment.disputeStatus = outcome
        payment = try await settle(payment, context)
        try await transaction.payments.update(payment, now: now())
        if before != payment || existing?.status != dispute.status {
            try await context.audit(
                existing == nil ? "dispute.opened" : closed ? "dispute.closed" : "dispute.updated",
                before: existing.map { ["dispute": $0.disputeID, "status": $0.status] }.map { $0.merging(Self.auditFields(before)) { $1 } },
                after: ["dispute": dispute.id, "status": dispute.status].merging(Self.auditFields(payment)) { $1 })
        }
        return context.processed()
    }
}
