import BillingStore
import Foundation
import StripeAPI

extension CheckoutService {
    /// `billing.setupPaymentMethod`: a setup-mode Checkout Session that saves a card for invoices this server issues
    /// and charges off-session, in atomic phases. The card is recorded when Stripe confirms it (`setup_intent.succeeded`).
    func setupPaymentMethod(call: TenantCall) async throws -> CheckoutStarted {
        let client = try requireStripe()
        let settings = stripe
        let actor = call.actor
        let tenantID = call.tenantID.lowercased
        let currency = catalog.credits.currency
        let customer = try await customerID(for: call.tenantID, stripe: client)
        return try await inAtomicPhases(
            call.tenantID, .setup, operation: "billing.setupPaymentMethod", limit: self.settings.rateLimits.sessions,
            decide: { _ -> PhaseOne<String, CheckoutStarted> in
                // A repeat while the first is still being made (a double click) is the same request.
                .call(request: "setup", plan: customer)
            },
            call: { customer, intent in
                let request = CheckoutSessionRequest(
                    mode: .setup, customer: customer, clientReferenceID: tenantID, successURL: settings.returnURL,
                    cancelURL: settings.cancelURL, metadata: [("tenant_id", .string(tenantID)), ("purpose", "setup")],
                    // Cards only, for the off-session charges of this server's invoices.
                    allowedPaymentMethodTypes: ["card"], currency: currency)
                return try await client.createCheckoutSession(request, idempotencyKey: intent.key("session"))
            },
            record: { transaction, _, _, session, recorded in
                let started = try CheckoutStarted(session)
                if recorded { return started }
                try await self.recordSession(session, url: started.checkoutUrl, purpose: "setup", planned: nil, transaction)
                try await transaction.audit.record(actor: actor, action: "payment_method.setup_opened", before: nil, after: ["session": session.id])
                return started
            },
            settle: { try await self.abandonUnansweredSession($0, tenant: call.tenantID) })
    }
}
