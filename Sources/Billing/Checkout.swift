import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Crypto
import StripeAPI

public struct CheckoutParams: Decodable, Sendable {
    public var plan: String
    public var interval: String?
    public var seats: Int?
}

public struct TopUpParams: Decodable, Sendable {
    public var credits: Int
    public var idempotencyKey: String?
}

public struct PortalParams: Decodable, Sendable {
    public var returnUrl: String?
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

public struct PortalOpened: Encodable, Sendable, Equatable {
    public var url: String
}

extension BillingAPI {
    func requireStripe() throws -> StripeClient {
        guard let client = stripe.client else {
            throw BillingError.preconditionFailed(
                "Stripe is not configured on this server: set STRIPE_SECRET_KEY, or run `billingd dev` for the local stand-in")
        }
        return client
    }

    /// The tenant's Stripe customer, created when it has none yet: read in a short transaction, created at Stripe with no
    /// lock held (keyed by the tenant, so two requests at once get one customer), and recorded in a second one. Its id
    /// is committed before anything else uses it, so a later failure cannot roll it back.
    func customerID(for tenantID: UUID, stripe client: StripeClient) async throws -> String {
        let tenant = try await tenants.database.transaction(tenantID, operation: "customer") { try await lockedTenant($0) }
        if let existing = tenant.stripeCustomerID { return existing }
        let id = tenant.id.lowercased
        // A clock of the tenant's own, starting now (a retry finds the same one by its key).
        let clock = stripe.testClocks
            ? try await client.createTestClock(
                frozenTime: Int(now().timeIntervalSince1970), name: "tenant \(id)", idempotencyKey: "clock:\(id)").id
            : nil
        let created = try await client.createCustomer(
            email: tenant.email, name: tenant.name, tenantID: id, testClock: clock, idempotencyKey: "customer:\(id)")
        return try await tenants.database.transaction(tenantID, operation: "customer") { transaction in
            // Another request may have recorded it first (the same key gave it the same customer).
            if let existing = try await lockedTenant(transaction).stripeCustomerID { return existing }
            try await transaction.setStripeCustomer(created.id)
            return created.id
        }
    }

    func lockedTenant(_ transaction: TenantTransaction) async throws -> TenantRecord {
        guard let tenant = try await transaction.lockTenant() else {
            throw BillingError.notFound(
                "tenant \(transaction.tenant.uuidString.lowercased()) does not exist or was deleted; provision it with tenants.provision")
        }
        return tenant
    }

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
                if let live = try await transaction.liveSubscription() {
                    throw BillingError.conflict(
                        "this tenant already has a \(live.status) '\(live.plan)' subscription; change it with billing.changePlan or in the portal (billing.portal)",
                        data: ["plan": .string(live.plan), "status": .string(live.status)])
                }
                let open = try await transaction.openSubscriptionSession(now: now())
                // A double click (or a second tab) with the same choice gets the session already open.
                if let open, open.plan == plan.key && open.interval == interval.rawValue && open.seats == seats {
                    return .answered(CheckoutStarted(checkoutUrl: open.url, sessionId: open.sessionID))
                }
                // One free trial per tenant: a tenant that had one (on any plan) pays from the first day.
                let trialUsed = try await transaction.trialUsed()
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
                var parameters: FormParameters = [
                    "mode": "subscription",
                    "customer": .string(planned.customer),
                    "client_reference_id": .string(tenantID),
                    "success_url": .string(settings.returnURL),
                    "cancel_url": .string(settings.cancelURL),
                    "line_items": [["price": .string(planned.priceID), "quantity": .int(planned.seats)]],
                    "metadata": ["tenant_id": .string(tenantID), "plan": .string(planned.plan), "interval": .string(planned.interval),
                                 "seats": .int(planned.seats), "purpose": "subscription"],
                ]
                var subscriptionData: [(String, FormValue)] = [
                    ("metadata", ["tenant_id": .string(tenantID), "plan": .string(planned.plan), "purpose": "subscription"]),
                ]
                if let days = planned.trialDays { subscriptionData.append(("trial_period_days", .int(days))) }
                parameters["subscription_data"] = .fields(subscriptionData)
                if settings.allowPromotionCodes { parameters["allow_promotion_codes"] = true }
                return try await client.createCheckoutSession(parameters, idempotencyKey: intent.key("session"))
            },
            record: { transaction, planned, _, session, recorded in
                let started = try CheckoutStarted(session)
                if recorded { return started }
                if let replaced = planned.replacing { try await transaction.markSessionExpired(replaced) }
                try await self.recordSession(session, url: started.checkoutUrl, purpose: "subscription", planned: planned, transaction)
                try await transaction.audit(actor: actor, action: "checkout.opened", before: nil, after: [
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
        try await transaction.recordCheckoutSession(
            sessionID: session.id, purpose: purpose, url: url, plan: planned?.plan, interval: planned?.interval, seats: planned?.seats,
            expiresAt: session.expiresAt.map { Date(timeIntervalSince1970: Double($0)) } ?? now.addingTimeInterval(86400), now: now)
    }

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
                if let key = params.idempotencyKey, let earlier = try await transaction.topUp(key: key) {
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
                let metadata: FormValue = [
                    "tenant_id": .string(tenantID), "purpose": "credit_topup", "credits": .int(plan.credits),
                    "top_up_id": .string(plan.topUpID.lowercased),
                ]
                return try await client.createCheckoutSession([
                    "mode": "payment",
                    "customer": .string(plan.customer),
                    "client_reference_id": .string(tenantID),
                    "success_url": .string(settings.returnURL),
                    "cancel_url": .string(settings.cancelURL),
                    "line_items": [[
                        "price_data": [
                            "currency": .string(pricing.currency), "unit_amount": .int(pricing.unitAmount),
                            "product_data": ["name": "Credits"],
                        ],
                        "quantity": .int(plan.credits),
                    ]],
                    "metadata": metadata,
                    "payment_intent_data": ["metadata": metadata],
                ], idempotencyKey: intent.key("session"))
            },
            record: { transaction, plan, _, session, recorded in
                let started = try CheckoutStarted(session)
                if recorded { return started }
                try await self.recordSession(session, url: started.checkoutUrl, purpose: "credit_topup", planned: nil, transaction)
                try await transaction.recordTopUp(
                    id: plan.topUpID, key: params.idempotencyKey, credits: plan.credits, amount: plan.amount, currency: pricing.currency,
                    sessionID: session.id, now: self.now())
                try await transaction.audit(actor: actor, action: "topup.opened", before: nil, after: [
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
            try await transaction.topUp(key: key).flatMap { $0.status == "pending" && $0.expiresAt <= now ? $0 : nil }
        }
        guard let lapsed, try await client.retrieveCheckoutSession(lapsed.sessionID).status == "expired" else { return }
        try await tenants.database.transaction(tenant, operation: "top-up") { transaction in
            try await transaction.expireTopUp(lapsed.topUpID, sessionID: lapsed.sessionID)
        }
    }

    /// `billing.checkoutSession`: one of this tenant's Checkout Sessions, read from what its webhooks recorded.
    func checkoutSession(_ params: CheckoutSessionParams, call: TenantCall) async throws -> CheckoutSessionView {
        guard !params.sessionId.isEmpty, params.sessionId.count <= 255 else {
            throw BillingError.invalidParams(field: "sessionId", "sessionId must be the sessionId a checkout, topUp or setupPaymentMethod call returned")
        }
        return try await tenants.database.transaction(call.tenantID, operation: "read checkout session", readOnly: true) { transaction in
            try await requireReadable(transaction, call)
            guard let record = try await transaction.checkoutSession(params.sessionId) else {
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

    /// `billing.portal`: a Customer Portal session; the return URL must be on this server's own origin.
    func portal(_ params: PortalParams, call: TenantCall) async throws -> PortalOpened {
        let returnURL = params.returnUrl ?? "\(stripe.publicURL)/billing"
        guard let wanted = URLComponents(string: returnURL), let own = URLComponents(string: stripe.publicURL),
              wanted.scheme == own.scheme, wanted.host == own.host, wanted.port == own.port
        else {
            throw BillingError.invalidParams(
                field: "returnUrl", "returnUrl must be on \(stripe.publicURL) (no redirects to other sites)")
        }
        let client = try requireStripe()
        try await spendRateToken(settings.rateLimits.portal, tenant: call.tenantID, method: "billing.portal")
        let customer = try await customerID(for: call.tenantID, stripe: client)
        // A portal session is a short-lived link that moves no money: a fresh one per call is right.
        let session = try await client.createPortalSession(
            customer: customer, returnURL: returnURL, idempotencyKey: "portal:\(customer):\(newID().lowercased)")
        return PortalOpened(url: session.url)
    }

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

    /// After provisioning: the Stripe customer, if Stripe answers; if not, the tenant works and it is made on first need.
    func createCustomerAfterProvisioning(_ tenantID: UUID) async -> String? {
        guard let client = stripe.client else { return nil }
        return try? await customerID(for: tenantID, stripe: client)
    }

    func parseInterval(_ text: String?) throws -> BillingInterval {
        guard let text else { return .month }
        guard let interval = BillingInterval(rawValue: text) else {
            throw BillingError.invalidParams(field: "interval", "interval must be month or year (got '\(text)')")
        }
        return interval
    }
}

extension UUID {
    /// A name-based UUID (version 5 layout, SHA-256 instead of SHA-1): the same name gives the same id.
    init(derivedFrom name: String) {
        var bytes = Array(SHA256.hash(data: Array(name.utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0f) | 0x50
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        self = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}
