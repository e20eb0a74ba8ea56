import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

public struct TopUpParams: Decodable, Sendable {
    public var credits: Int
    public var idempotencyKey: String?
}

extension CheckoutService {
    /// What `billing.topUp` asks Stripe for; kept with its intent, so that a repeat sends the very same request.
    struct TopUpPlan: Codable, Sendable {
        var customer: String
        var credits: Int
        var amount: Int
        var topUpID: UUID
    }

    /// `billing.topUp`: a payment-mode Checkout Session for credits, in atomic phases (`inAtomicPhases`). The balance
    /// does not change here.
    func topUp(_ params: TopUpParams, call: TenantCall) async throws -> CheckoutStarted {
        let pricing = catalog.credits
        guard (pricing.minimum...pricing.maximum).contains(params.credits) else {
            throw BillingError.invalidParams(
                field: "credits", "credits must be between \(pricing.minimum) and \(pricing.maximum) per top-up (got \(params.credits))")
        }
        if let key = params.idempotencyKey, key.isEmpty || key.count > 255 {
            throw BillingError.invalidParams(field: "idempotencyKey", "idempotencyKey must be 1 to 255 characters")
        }
        let client = try requireStripe()
        let settings = stripe
        let actor = call.actor
        let tenantID = call.tenantID.lowercased
        let customer = try await customerID(for: call.tenantID, stripe: client)
        if let key = params.idempotencyKey { try await settleLapsedTopUp(key: key, tenant: call.tenantID, client: client) }
        return try await inAtomicPhases(
            call.tenantID, .topUp, operation: "billing.topUp", limit: self.settings.rateLimits.sessions,
            decide: { transaction -> PhaseOne<TopUpPlan, CheckoutStarted> in
                if let key = params.idempotencyKey, let earlier = try await transaction.checkout.topUp(key: key) {
                    // Paid an amount that does not match, and held for an operator: the key stays taken, and no
                    // second payment is opened for it.
                    guard earlier.status != "flagged" else {
                        throw BillingError.conflict(
                            "idempotencyKey '\(key)' belongs to top-up \(earlier.topUpID.lowercased), whose payment did not match its amount and is held for an operator; use a new key for another top-up",
                            data: ["topUpId": .string(earlier.topUpID.lowercased), "sessionId": .string(earlier.sessionID)])
                    }
                    guard earlier.credits == params.credits else {
                        throw BillingError.conflict(
                            "idempotencyKey '\(key)' was used for a top-up of \(earlier.credits) credits; use a new key for \(params.credits)",
                            data: ["credits": .integer(earlier.credits), "sessionId": .string(earlier.sessionID)])
                    }
                    return .answered(CheckoutStarted(checkoutUrl: earlier.url, sessionId: earlier.sessionID))
                }
                // Without a key, a repeat while the first is still being made (a double click) is the same request.
                return .call(
                    request: "credits=\(params.credits) key=\(params.idempotencyKey ?? "")",
                    plan: TopUpPlan(customer: customer, credits: params.credits, amount: params.credits * pricing.unitAmount, topUpID: newID()))
            },
            call: { plan, intent in
                let request = CheckoutSessionRequest(
                    mode: .payment, customer: plan.customer, clientReferenceID: tenantID, successURL: settings.returnURL,
                    cancelURL: settings.cancelURL,
                    lineItems: [.amount(currency: pricing.currency, unitAmount: pricing.unitAmount, product: "Credits", quantity: plan.credits)],
                    metadata: [
                        ("tenant_id", .string(tenantID)), ("purpose", "credit_topup"), ("credits", .int(plan.credits)),
                        ("top_up_id", .string(plan.topUpID.lowercased)),
                    ])
                return try await client.createCheckoutSession(request, idempotencyKey: intent.key("session"))
            },
            record: { transaction, plan, _, session, recorded in
                let started = try CheckoutStarted(session)
                if recorded { return started }
                try await self.recordSession(session, url: started.checkoutUrl, purpose: "credit_topup", planned: nil, transaction)
                try await transaction.checkout.recordTopUp(
                    id: plan.topUpID, key: params.idempotencyKey, credits: plan.credits, amount: plan.amount, currency: pricing.currency,
                    sessionID: session.id, now: self.now())
                try await transaction.audit.record(actor: actor, action: "topup.opened", before: nil, after: [
                    "topUp": plan.topUpID.lowercased, "session": session.id, "credits": String(plan.credits),
                    "amount": String(plan.amount), "currency": pricing.currency,
                ])
                return started
            },
            settle: { try await self.abandonUnansweredSession($0, tenant: call.tenantID) })
    }

    /// A keyed top-up past its time here: only Stripe's word that it expired unpaid frees the key. Read with no lock
    /// held; recorded in a short transaction of its own.
    func settleLapsedTopUp(key: String, tenant: UUID, client: StripeClient) async throws {
        let now = now()
        let lapsed = try await tenants.database.transaction(tenant, operation: "top-up", readOnly: true) { transaction in
            try await transaction.checkout.topUp(key: key).flatMap { $0.status == "pending" && $0.expiresAt <= now ? $0 : nil }
        }
        guard let lapsed, try await client.retrieveCheckoutSession(lapsed.sessionID).status == "expired" else { return }
        try await tenants.database.transaction(tenant, operation: "top-up") { transaction in
            try await transaction.checkout.expireTopUp(lapsed.topUpID, sessionID: lapsed.sessionID)
        }
    }
}
