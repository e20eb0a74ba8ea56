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

    /// The tenant's Stripe customer, created when it has none yet and committed in a transaction of its own, so a
    /// later failure cannot roll the id back (Stripe forgets idempotency keys after a day).
    func customerID(for tenantID: UUID, stripe client: StripeClient) async throws -> String {
        try await tenants.database.transaction(tenantID, operation: "customer") { transaction in
            try await ensureCustomer(transaction, try await lockedTenant(transaction), stripe: client)
        }
    }

    /// Within a transaction: the tenant's Stripe customer, created (idempotently, keyed by the tenant) if missing.
    func ensureCustomer(_ transaction: TenantTransaction, _ tenant: TenantRecord, stripe: StripeClient) async throws -> String {
        if let existing = tenant.stripeCustomerID { return existing }
        let tenantID = tenant.id.uuidString.lowercased()
        // A clock of the tenant's own, starting now (a retry finds the same one by its key).
        let clock = self.stripe.testClocks
            ? try await stripe.createTestClock(
                frozenTime: Int(now().timeIntervalSince1970), name: "tenant \(tenantID)", idempotencyKey: "clock:\(tenantID)").id
            : nil
        let customer = try await stripe.createCustomer(
            email: tenant.email, name: tenant.name, tenantID: tenantID, testClock: clock, idempotencyKey: "customer:\(tenantID)")
        try await transaction.setStripeCustomer(customer.id)
        return customer.id
    }

    func lockedTenant(_ transaction: TenantTransaction) async throws -> TenantRecord {
        guard let tenant = try await transaction.lockTenant() else {
            throw BillingError.notFound(
                "tenant \(transaction.tenant.uuidString.lowercased()) does not exist or was deleted; provision it with tenants.provision")
        }
        return tenant
    }

    func checkRate(_ transaction: TenantTransaction) async throws {
        let opened = try await transaction.sessionsOpened(since: now().addingTimeInterval(-60))
        guard opened < stripe.sessionsPerMinute else {
            throw BillingError.tooManyRequests(
                "this tenant opened \(opened) checkout sessions in the last minute (at most \(stripe.sessionsPerMinute)); wait a minute and try again")
        }
    }

    /// `billing.checkout`: a subscription Checkout Session for a plan; the plan changes only when Stripe confirms.
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
        let now = now()
        let actor = call.actor
        let customer = try await customerID(for: call.tenantID, stripe: client)
        return try await tenants.database.transaction(call.tenantID, operation: "checkout") { transaction in
            let tenant = try await lockedTenant(transaction)
            if let live = try await transaction.liveSubscription() {
                throw BillingError.conflict(
                    "this tenant already has a \(live.status) '\(live.plan)' subscription; change it with billing.changePlan or in the portal (billing.portal)",
                    data: ["plan": .string(live.plan), "status": .string(live.status)])
            }
            if let open = try await transaction.openSubscriptionSession(now: now) {
                // A double click (or a second tab) with the same choice gets the session already open.
                if open.plan == plan.key && open.interval == interval.rawValue && open.seats == seats {
                    return CheckoutStarted(checkoutUrl: open.url, sessionId: open.sessionID)
                }
                // Another choice replaces it: the old session is expired at Stripe first, so only one can be paid.
                try await expireReplaced(open.sessionID, client: client, transaction: transaction)
            }
            try await checkRate(transaction)
            let tenantID = tenant.id.uuidString.lowercased()
            let sequence = try await transaction.sessionsRecorded()
            var parameters: FormParameters = [
                "mode": "subscription",
                "customer": .string(customer),
                "client_reference_id": .string(tenantID),
                "success_url": .string(settings.returnURL),
                "cancel_url": .string(settings.cancelURL),
                "line_items": [["price": .string(priceID), "quantity": .int(seats)]],
                "metadata": ["tenant_id": .string(tenantID), "plan": .string(plan.key), "interval": .string(interval.rawValue),
                             "seats": .int(seats), "purpose": "subscription"],
            ]
            var subscriptionData: [(String, FormValue)] = [
                ("metadata", ["tenant_id": .string(tenantID), "plan": .string(plan.key), "purpose": "subscription"]),
            ]
            // One free trial per tenant: a tenant that had one (on any plan) pays from the first day.
            if plan.trialDays > 0, try await !transaction.trialUsed() {
                subscriptionData.append(("trial_period_days", .int(plan.trialDays)))
            }
            parameters["subscription_data"] = .fields(subscriptionData)
            if settings.allowPromotionCodes { parameters["allow_promotion_codes"] = true }
            let session = try await client.createCheckoutSession(
                parameters, idempotencyKey: "checkout:\(tenantID):\(sequence):\(plan.key):\(interval.rawValue):\(seats)")
            guard let url = session.url else { throw StripeError.unreadable("checkout session \(session.id) has no url") }
            try await transaction.recordCheckoutSession(
                sessionID: session.id, purpose: "subscription", url: url, plan: plan.key, interval: interval.rawValue, seats: seats,
                expiresAt: session.expiresAt.map { Date(timeIntervalSince1970: Double($0)) } ?? now.addingTimeInterval(86400), now: now)
            try await transaction.audit(actor: actor, action: "checkout.opened", before: nil, after: [
                "session": session.id, "plan": plan.key, "interval": interval.rawValue, "seats": String(seats),
            ])
            return CheckoutStarted(checkoutUrl: url, sessionId: session.id)
        }
    }

    /// `billing.topUp`: a payment-mode Checkout Session for credits. The balance does not change here.
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
        let now = now()
        let actor = call.actor
        let amount = params.credits * pricing.unitAmount
        let customer = try await customerID(for: call.tenantID, stripe: client)
        return try await tenants.database.transaction(call.tenantID, operation: "top-up") { transaction in
            let tenant = try await lockedTenant(transaction)
            if let key = params.idempotencyKey, let earlier = try await transaction.topUp(key: key) {
                // Paid an amount that does not match, and held for an operator: the key stays taken, and no second
                // payment is opened for it.
                guard earlier.status != "flagged" else {
                    throw BillingError.conflict(
                        "idempotencyKey '\(key)' belongs to top-up \(earlier.topUpID.lowercased), whose payment did not match its amount and is held for an operator; use a new key for another top-up",
                        data: ["topUpId": .string(earlier.topUpID.lowercased), "sessionId": .string(earlier.sessionID)])
                }
                var payable = earlier.status == "paid" || earlier.expiresAt > now
                if !payable {
                    // Past its time here; only Stripe's word that it expired unpaid frees the key.
                    if try await client.retrieveCheckoutSession(earlier.sessionID).status == "expired" {
                        try await transaction.expireTopUp(earlier.topUpID, sessionID: earlier.sessionID)
                    } else {
                        payable = true
                    }
                }
                if payable {
                    guard earlier.credits == params.credits else {
                        throw BillingError.conflict(
                            "idempotencyKey '\(key)' was used for a top-up of \(earlier.credits) credits; use a new key for \(params.credits)",
                            data: ["credits": .integer(earlier.credits), "sessionId": .string(earlier.sessionID)])
                    }
                    return CheckoutStarted(checkoutUrl: earlier.url, sessionId: earlier.sessionID)
                }
            }
            try await checkRate(transaction)
            let tenantID = tenant.id.uuidString.lowercased()
            let sequence = try await transaction.sessionsRecorded()
            let stripeKey = "topup:\(tenantID):\(sequence):\(params.credits)"
            // Derived from the key, so a retry sends Stripe the very same params (a new id would be a different
            // request under the same key, which Stripe refuses).
            let proposedID = UUID(derivedFrom: stripeKey)
            let metadata: FormValue = [
                "tenant_id": .string(tenantID), "purpose": "credit_topup", "credits": .int(params.credits),
                "top_up_id": .string(proposedID.uuidString.lowercased()),
            ]
            let session = try await client.createCheckoutSession([
                "mode": "payment",
                "customer": .string(customer),
                "client_reference_id": .string(tenantID),
                "success_url": .string(settings.returnURL),
                "cancel_url": .string(settings.cancelURL),
                "line_items": [[
                    "price_data": [
                        "currency": .string(pricing.currency), "unit_amount": .int(pricing.unitAmount),
                        "product_data": ["name": "Credits"],
                    ],
                    "quantity": .int(params.credits),
                ]],
                "metadata": metadata,
                "payment_intent_data": ["metadata": metadata],
            ], idempotencyKey: stripeKey)
            guard let url = session.url else { throw StripeError.unreadable("checkout session \(session.id) has no url") }
            // A retry after a rolled-back attempt gets Stripe's replay of the first session: keep its top-up id.
            let topUpID = session.metadata?["top_up_id"].flatMap(UUID.init(uuidString:)) ?? proposedID
            try await transaction.recordCheckoutSession(
                sessionID: session.id, purpose: "credit_topup", url: url, plan: nil, interval: nil, seats: nil,
                expiresAt: session.expiresAt.map { Date(timeIntervalSince1970: Double($0)) } ?? now.addingTimeInterval(86400), now: now)
            try await transaction.recordTopUp(
                id: topUpID, key: params.idempotencyKey, credits: params.credits, amount: amount, currency: pricing.currency,
                sessionID: session.id, now: now)
            try await transaction.audit(actor: actor, action: "topup.opened", before: nil, after: [
                "topUp": topUpID.uuidString.lowercased(), "session": session.id, "credits": String(params.credits),
                "amount": String(amount), "currency": pricing.currency,
            ])
            return CheckoutStarted(checkoutUrl: url, sessionId: session.id)
        }
    }

    /// `billing.setupPaymentMethod`: a setup-mode Checkout Session that saves a card for invoices this server issues
    /// and charges off-session. The card is recorded when Stripe confirms it (`setup_intent.succeeded`).
    func setupPaymentMethod(call: TenantCall) async throws -> CheckoutStarted {
        let client = try requireStripe()
        let settings = stripe
        let now = now()
        let actor = call.actor
        let customer = try await customerID(for: call.tenantID, stripe: client)
        return try await tenants.database.transaction(call.tenantID, operation: "setup payment method") { transaction in
            let tenant = try await lockedTenant(transaction)
            try await checkRate(transaction)
            let tenantID = tenant.id.lowercased
            let sequence = try await transaction.sessionsRecorded()
            let metadata: FormValue = ["tenant_id": .string(tenantID), "purpose": "setup"]
            let session = try await client.createCheckoutSession([
                "mode": "setup",
                "customer": .string(customer),
                "client_reference_id": .string(tenantID),
                "success_url": .string(settings.returnURL),
                "cancel_url": .string(settings.cancelURL),
                // Cards only, for the off-session charges of this server's invoices; with that, no currency is needed.
                "allowed_payment_method_types": ["card"],
                "currency": .string(catalog.credits.currency),
                "metadata": metadata,
                "setup_intent_data": ["metadata": metadata],
            ], idempotencyKey: "setup:\(tenantID):\(sequence)")
            guard let url = session.url else { throw StripeError.unreadable("checkout session \(session.id) has no url") }
            try await transaction.recordCheckoutSession(
                sessionID: session.id, purpose: "setup", url: url, plan: nil, interval: nil, seats: nil,
                expiresAt: session.expiresAt.map { Date(timeIntervalSince1970: Double($0)) } ?? now.addingTimeInterval(86400), now: now)
            try await transaction.audit(actor: actor, action: "payment_method.setup_opened", before: nil, after: ["session": session.id])
            return CheckoutStarted(checkoutUrl: url, sessionId: session.id)
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
            customer: customer, returnURL: returnURL, idempotencyKey: "portal:\(customer):\(UUID().uuidString.lowercased())")
        return PortalOpened(url: session.url)
    }

    /// Expires an open Checkout Session at Stripe before what replaces it (another choice, or the tenant's deletion).
    /// One the customer has just paid cannot be: nothing new happens, and the caller is told to wait for its webhook
    /// and then `next`.
    func expireReplaced(
        _ sessionID: String, client: StripeClient, transaction: TenantTransaction,
        next: String = "change the plan with billing.changePlan"
    ) async throws {
        guard try await client.expireUnlessCompleted(sessionID) else {
            throw BillingError.conflict(
                "the checkout \(sessionID) was just completed; wait for it to be confirmed, then \(next)",
                data: ["sessionId": .string(sessionID)])
        }
        try await transaction.markSessionExpired(sessionID)
    }

    /// After provisioning: the Stripe customer, if Stripe answers; if not, the tenant works and it is made on first need.
    func createCustomerAfterProvisioning(_ tenantID: UUID) async -> String? {
        guard let client = stripe.client else { return nil }
        do {
            return try await tenants.database.transaction(tenantID, operation: "customer") { transaction in
                let tenant = try await lockedTenant(transaction)
                return try await ensureCustomer(transaction, tenant, stripe: client)
            }
        } catch {
            return nil
        }
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
