import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

public struct CheckoutParams: Decodable, Sendable {
    public var plan: String
    public var interval: String?
    public var seats: Int?
}

public struct CheckoutStarted: Encodable, Sendable, Equatable {
    public var checkoutUrl: String
    public var sessionId: String
}

extension CheckoutStarted {
    /// What a caller gets for a session Stripe made: its id and URL (a session without a URL is not one to hand out).
    init(_ session: CheckoutSession) throws {
        guard let url = session.url else { throw StripeError.unreadable("checkout session \(session.id) has no url") }
        self.init(checkoutUrl: url, sessionId: session.id)
    }
}

public struct CheckoutSessionParams: Decodable, Sendable {
    public var sessionId: String
}

/// `billing.checkoutSession`: what became of a Checkout Session this tenant opened, as far as Stripe's webhooks
/// have said. `status` is `open` until Stripe confirms it (`complete`) or it lapses (`expired`).
public struct CheckoutSessionView: Encodable, Sendable, Equatable {
    public var sessionId: String
    public var purpose: String
    public var status: String
    @OrNull public var plan: String?
    @OrNull public var interval: String?
    @OrNull public var seats: Int?
    @OrNull public var topUp: TopUpView?
    public var createdAt: Date
    public var expiresAt: Date

    public struct TopUpView: Encodable, Sendable, Equatable {
        public var credits: Int
        public var amount: Int
        public var currency: String
        /// `pending` until the payment is confirmed and credited (`paid`); `expired`, `failed`, or `flagged` (Stripe
        /// took an amount that does not match: not credited, for an operator to settle).
        public var status: String
        @OrNull public var paidAt: Date?
    }
}

extension CheckoutService {
    /// What `billing.checkout` asks Stripe for; kept with its intent, so that a repeat sends the very same request.
    struct CheckoutPlan: Codable, Sendable {
        var customer: String
        var priceID: String
        var plan: String
        var interval: String
        var seats: Int
        var trialDays: Int?
        /// An open session for another choice, expired at Stripe before this one is made, so only one can be paid.
        var replacing: String?
    }

    /// `billing.checkout`: a subscription Checkout Session for a plan, in atomic phases; the plan changes only when
    /// Stripe confirms. One plan checkout is made at a time per tenant (the subject is exclusive).
    func checkout(_ params: CheckoutParams, call: TenantCall) async throws -> CheckoutStarted {
        let plan = try catalog.plan(named: params.plan)
        guard plan.billing == .subscription else {
            throw BillingError.invalidParams(
                field: "plan", "plan '\(plan.key)' is billed by invoice: save a card with billing.setupPaymentMethod, then subscribe with billing.subscribeByInvoice")
        }
        let interval = try parseInterval(params.interval)
        let priceID: String
        do {
            priceID = try catalog.stripePriceID(of: plan, per: interval)
        } catch let error as CatalogError {
            throw BillingError.invalidParams(field: "plan", "\(error); choose a paid plan")
        }
        let seats = params.seats ?? plan.seats.default
        try plan.seats.validate(seats, plan: plan.key)
        let client = try requireStripe()
        let settings = stripe
        let actor = call.actor
        let tenantID = call.tenantID.lowercased
        let customer = try await customerID(for: call.tenantID, stripe: client)
        return try await inAtomicPhases(
            call.tenantID, .checkout, operation: "billing.checkout", limit: self.settings.rateLimits.sessions,
            decide: { transaction -> PhaseOne<CheckoutPlan, CheckoutStarted> in
                if let live = try await transaction.subscriptions.livePlan() {
                    throw BillingError.conflict(
                        "this tenant already has a \(live.status) '\(live.plan)' subscription; change it with billing.changePlan or in the portal (billing.portal)",
                        data: ["plan": .string(live.plan), "status": .string(live.status)])
                }
                let open = try await transaction.checkout.openSubscriptionSession(now: now())
                // A double click (or a second tab) with the same choice gets the session already open.
                if let open, open.plan == plan.key && open.interval == interval.rawValue && open.seats == seats {
                    return .answered(CheckoutStarted(checkoutUrl: open.url, sessionId: open.sessionID))
                }
                // One free trial per tenant: a tenant that had one (on any plan) pays from the first day.
                let trialUsed = try await transaction.tenantRow.trialUsed()
                let trial = plan.trialDays > 0 && !trialUsed ? plan.trialDays : nil
                return .call(
                    request: "plan=\(plan.key) interval=\(interval.rawValue) seats=\(seats)",
                    plan: CheckoutPlan(
                        customer: customer, priceID: priceID, plan: plan.key, interval: interval.rawValue, seats: seats, trialDays: trial,
                        replacing: open?.sessionID))
            },
            call: { planned, intent in
                if let replacing = planned.replacing {
                    // Another choice replaces it: the old session is expired at Stripe first, so only one can be paid.
                    try await expireReplaced(replacing, client: client)
                }
                let request = CheckoutSessionRequest(
                    mode: .subscription, customer: planned.customer, clientReferenceID: tenantID, successURL: settings.returnURL,
                    cancelURL: settings.cancelURL, lineItems: [.price(id: planned.priceID, quantity: planned.seats)],
                    metadata: [
                        ("tenant_id", .string(tenantID)), ("plan", .string(planned.plan)), ("interval", .string(planned.interval)),
                        ("seats", .int(planned.seats)), ("purpose", "subscription"),
                    ],
                    subscriptionMetadata: [("tenant_id", .string(tenantID)), ("plan", .string(planned.plan)), ("purpose", "subscription")],
                    trialPeriodDays: planned.trialDays, allowPromotionCodes: settings.allowPromotionCodes)
                return try await client.createCheckoutSession(request, idempotencyKey: intent.key("session"))
            },
            record: { transaction, planned, _, session, recorded in
                let started = try CheckoutStarted(session)
                if recorded { return started }
                if let replaced = planned.replacing { try await transaction.checkout.markSessionExpired(replaced) }
                try await self.recordSession(session, url: started.checkoutUrl, purpose: "subscription", planned: planned, transaction)
                try await transaction.audit.record(actor: actor, action: "checkout.opened", before: nil, after: [
                    "session": session.id, "plan": planned.plan, "interval": planned.interval, "seats": String(planned.seats),
                ])
                return started
            },
            settle: { try await self.abandonUnansweredSession($0, tenant: call.tenantID) })
    }

    /// Settles a Checkout intent that no answer ended: a session it may have made was never handed to anyone (its URL
    /// is answered only once recorded), so nobody can pay it, and Stripe expires it within a day.
    func abandonUnansweredSession(_ intent: StripeIntent, tenant: UUID) async throws {
        try await finish(intent, tenant: tenant, as: "abandoned", because: "settled: its session, if any, was never handed out")
    }

    /// Records a session this server opened, with its own expiry (a day when Stripe gave none).
    func recordSession(
        _ session: CheckoutSession, url: String, purpose: String, planned: CheckoutPlan?, _ transaction: TenantTransaction
    ) async throws {
        let now = now()
        try await transaction.checkout.recordSession(
            sessionID: session.id, purpose: purpose, url: url, plan: planned?.plan, interval: planned?.interval, seats: planned?.seats,
            expiresAt: session.expiresAt.map { Date(timeIntervalSince1970: Double($0)) } ?? now.addingTimeInterval(86400), now: now)
    }

    /// `billing.checkoutSession`: one of this tenant's Checkout Sessions, read from what its webhooks recorded.
    func checkoutSession(_ params: CheckoutSessionParams, call: TenantCall) async throws -> CheckoutSessionView {
        guard !params.sessionId.isEmpty, params.sessionId.count <= 255 else {
            throw BillingError.invalidParams(field: "sessionId", "sessionId must be the sessionId a checkout, topUp or setupPaymentMethod call returned")
        }
        return try await tenants.database.transaction(call.tenantID, operation: "read checkout session", readOnly: true) { transaction in
            try await requireReadable(transaction, call)
            guard let record = try await transaction.checkout.session(params.sessionId) else {
                throw BillingError.notFound("this tenant opened no Checkout Session '\(params.sessionId)'")
            }
            return CheckoutSessionView(
                sessionId: record.sessionID, purpose: record.purpose, status: record.status, plan: record.plan,
                interval: record.interval, seats: record.seats,
                topUp: record.topUp.map {
                    .init(credits: $0.credits, amount: $0.amount, currency: $0.currency, status: $0.status, paidAt: $0.paidAt)
                },
                createdAt: record.createdAt, expiresAt: record.expiresAt)
        }
    }
}

/// Shared with the tenant's deletion, which expires its open sessions.
extension BillingService {
    /// Expires an open Checkout Session at Stripe before what replaces it (another choice, or the tenant's deletion);
    /// the caller records it expired afterwards. One the customer has just paid cannot be: nothing new happens, and the
    /// caller is told to wait for its webhook and then `next`.
    func expireReplaced(
        _ sessionID: String, client: StripeClient, next: String = "change the plan with billing.changePlan"
    ) async throws {
        guard try await client.expireUnlessCompleted(sessionID) else {
            throw BillingError.conflict(
                "the checkout \(sessionID) was just completed; wait for it to be confirmed, then \(next)",
                data: ["sessionId": .string(sessionID)])
        }
    }
}
