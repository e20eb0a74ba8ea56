import BillingStore
import Foundation
import StripeAPI

extension StripeEventProcessor {
    /// `payment_method.detached`: a card removed (in the portal, say) is never charged again here.
    func paymentMethodDetached(_ method: PaymentMethod, _ context: EventContext) async throws -> EventDisposition {
        guard try await context.transaction.tenantRow.defaultPaymentMethod() == method.id else {
            return context.processed("\(method.id) is not the card this server charges")
        }
        guard try await context.transaction.tenantRow.setDefaultPaymentMethod(nil, savedAt: context.created) else {
            return context.stale("a payment method saved later than \(method.id)'s removal is recorded already")
        }
        try await context.audit("payment_method.removed", before: ["paymentMethod": method.id], after: nil)
        return context.processed()
    }

    /// `payment_method.automatically_updated`: the card network replaced the card's number or expiry; the payment
    /// method keeps its id, so charges go on with it. Recorded for the tenant's audit trail.
    func paymentMethodUpdated(_ method: PaymentMethod, _ context: EventContext) async throws -> EventDisposition {
        let isDefault = try await context.transaction.tenantRow.defaultPaymentMethod() == method.id
        var after = ["paymentMethod": method.id, "default": String(isDefault)]
        if let card = method.card {
            after["card"] = "\(card.brand ?? "card") \(card.last4 ?? "????") \(card.expMonth.map(String.init) ?? "?")/\(card.expYear.map(String.init) ?? "?")"
        }
        try await context.audit("payment_method.updated", before: nil, after: after)
        return context.processed()
    }

    /// `setup_intent.setup_failed`: saving a card failed; nothing changes, and the tenant's audit trail says why.
    func setupFailed(_ intent: SetupIntent, _ context: EventContext) async throws -> EventDisposition {
        let reason = intent.lastSetupError.map { [$0.code, $0.declineCode, $0.message].compactMap { $0 }.joined(separator: ": ") }
            ?? "the card could not be saved"
        try await context.audit("payment_method.setup_failed", before: nil, after: ["setupIntent": intent.id, "failure": reason])
        return context.processed()
    }
}
