import Foundation

// The Stripe objects the product uses, with the fields it reads (Stripe's field names, API version 2026-10-28).
// Fields that older payloads or other API versions leave out are optional.

/// An expandable reference: Stripe sends the id, or the whole object when expanded (and some servers always expand).
public struct StripeID: Decodable, Sendable, Equatable, Hashable, CustomStringConvertible {
    public var id: String

    public init(_ id: String) { self.id = id }

    struct Object: Decodable { var id: String }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let id = try? container.decode(String.self) {
            self.id = id
        } else {
            self.id = try container.decode(Object.self).id
        }
    }

    public var description: String { id }
}

public struct StripeList<Item: Decodable & Sendable>: Decodable, Sendable {
    public var data: [Item]
    public var hasMore: Bool

    enum CodingKeys: String, CodingKey { case data, hasMore = "has_more" }
}

public struct Customer: Decodable, Sendable, Equatable {
    public var id: String
    public var email: String?
    public var name: String?
    public var metadata: [String: String]?
    public var deleted: Bool?
    public var invoiceSettings: InvoiceSettings?
    /// The test clock the customer lives on (test mode only).
    public var testClock: StripeID?

    public struct InvoiceSettings: Decodable, Sendable, Equatable {
        /// The payment method Stripe charges for invoices (and this server off-session); nil once removed.
        public var defaultPaymentMethod: StripeID?
        enum CodingKeys: String, CodingKey { case defaultPaymentMethod = "default_payment_method" }
    }

    enum CodingKeys: String, CodingKey {
        case id, email, name, metadata, deleted, invoiceSettings = "invoice_settings", testClock = "test_clock"
    }
}

public struct PaymentMethod: Decodable, Sendable, Equatable {
    public var id: String
    public var type: String
    public var customer: StripeID?
    public var card: Card?
    public var created: Int?

    public struct Card: Decodable, Sendable, Equatable {
        public var brand: String?
        public var last4: String?
        public var expMonth: Int?
        public var expYear: Int?
        enum CodingKeys: String, CodingKey { case brand, last4, expMonth = "exp_month", expYear = "exp_year" }
    }
}

/// A subscription schedule: the portal makes one for a downgrade at the period's end.
public struct SubscriptionSchedule: Decodable, Sendable, Equatable {
    public var id: String
    public var status: String
    public var subscription: StripeID?
    /// Once released, the subscription it governed (`subscription` is then null).
    public var releasedSubscription: String?
    public var customer: StripeID?
    /// `release` (the subscription goes on as the last phase left it), `cancel`, `none` or `renew`.
    public var endBehavior: String?
    public var phases: [Phase]
    /// The phase in force now, by Stripe's clock (a test clock's, for a customer on one); null when none is.
    public var currentPhase: CurrentPhase?
    public var created: Int?

    public struct CurrentPhase: Decodable, Sendable, Equatable {
        public var startDate: Int
        public var endDate: Int
        enum CodingKeys: String, CodingKey { case startDate = "start_date", endDate = "end_date" }
    }

    public struct Phase: Decodable, Sendable, Equatable {
        public var startDate: Int
        public var endDate: Int
        public var items: [Item]
        enum CodingKeys: String, CodingKey { case items, startDate = "start_date", endDate = "end_date" }
    }

    public struct Item: Decodable, Sendable, Equatable {
        public var price: StripeID
        public var quantity: Int?
    }

    enum CodingKeys: String, CodingKey {
        case id, status, subscription, phases, created, customer, endBehavior = "end_behavior", releasedSubscription = "released_subscription"
        case currentPhase = "current_phase"
    }

    /// Whether it still governs its subscription.
    public var isInForce: Bool { status == "not_started" || status == "active" }

    /// The first phase still to start: after the current one, or (when none is current, or Stripe did not say) after
    /// `now`.
    public func nextPhase(after now: Int) -> Phase? {
        let from = currentPhase?.endDate ?? now + 1
        return phases.sorted { $0.startDate < $1.startDate }.first { $0.startDate >= from }
    }
}

/// A Stripe test clock (test mode only): the simulated time of the customers made on it.
public struct TestClock: Decodable, Sendable, Equatable {
    public var id: String
    public var status: String
    public var frozenTime: Int
    public var name: String?

    enum CodingKeys: String, CodingKey { case id, status, name, frozenTime = "frozen_time" }
}

public struct CheckoutSession: Decodable, Sendable, Equatable {
    public var id: String
    public var url: String?
    public var status: String?
    public var mode: String
    public var paymentStatus: String?
    public var clientReferenceID: String?
    public var customer: StripeID?
    public var subscription: StripeID?
    public var paymentIntent: StripeID?
    public var setupIntent: StripeID?
    public var metadata: [String: String]?
    public var amountTotal: Int?
    public var currency: String?
    public var expiresAt: Int?

    enum CodingKeys: String, CodingKey {
        case id, url, status, mode, customer, subscription, metadata, currency
        case paymentStatus = "payment_status", clientReferenceID = "client_reference_id"
        case paymentIntent = "payment_intent", setupIntent = "setup_intent", amountTotal = "amount_total"
        case expiresAt = "expires_at"
    }
}

public struct PortalSession: Decodable, Sendable, Equatable {
    public var id: String
    public var url: String
    public var customer: StripeID?
}

public struct Price: Decodable, Sendable, Equatable {
    public var id: String
}

public struct SubscriptionItem: Decodable, Sendable, Equatable {
    public var id: String
    public var quantity: Int?
    public var price: Price?
    /// Older payloads name the price `plan`.
    public var plan: Price?
    /// Current API versions keep the period on the item.
    public var currentPeriodEnd: Int?

    public var priceID: String? { price?.id ?? plan?.id }

    enum CodingKeys: String, CodingKey {
        case id, quantity, price, plan, currentPeriodEnd = "current_period_end"
    }
}

public struct Subscription: Decodable, Sendable, Equatable {
    public var id: String
    public var status: String
    public var customer: StripeID?
    public var cancelAtPeriodEnd: Bool?
    /// When a scheduled cancellation takes effect: since Clover, Stripe schedules cancellations with `cancel_at`
    /// (also at the period's end).
    public var cancelAt: Int?
    /// Older-version fallback: before Basil the period was on the subscription, not its items.
    public var currentPeriodEnd: Int?
    public var items: StripeList<SubscriptionItem>
    public var metadata: [String: String]?
    public var created: Int?
    /// The schedule that governs it (the portal's downgrade at the period's end makes one).
    public var schedule: StripeID?
    /// A change made with `payment_behavior=pending_if_incomplete` that waits for its invoice to be paid.
    public var pendingUpdate: PendingUpdate?
    public var trialEnd: Int?

    public struct PendingUpdate: Decodable, Sendable, Equatable {
        public var expiresAt: Int
        public var subscriptionItems: [SubscriptionItem]?
        enum CodingKeys: String, CodingKey { case expiresAt = "expires_at", subscriptionItems = "subscription_items" }
    }

    /// Fields this type reads for payloads of API versions before the pinned one.
    public static let olderVersionFields: Set<String> = ["current_period_end"]

    /// The period end from the items (current versions) or the subscription (older ones).
    public var periodEnd: Int? { items.data.compactMap(\.currentPeriodEnd).max() ?? currentPeriodEnd }

    enum CodingKeys: String, CodingKey {
        case id, status, customer, items, metadata, created, schedule
        case cancelAtPeriodEnd = "cancel_at_period_end", currentPeriodEnd = "current_period_end", cancelAt = "cancel_at"
        case pendingUpdate = "pending_update", trialEnd = "trial_end"
    }
}

extension StripeList: Equatable where Item: Equatable {}

public struct PaymentError: Decodable, Sendable, Equatable {
    public var code: String?
    public var declineCode: String?
    public var message: String?

    enum CodingKeys: String, CodingKey { case code, message, declineCode = "decline_code" }
}

public struct PaymentIntent: Decodable, Sendable, Equatable {
    public var id: String
    public var status: String
    public var amount: Int
    public var currency: String
    public var customer: StripeID?
    public var metadata: [String: String]?
    public var latestCharge: StripeID?
    public var lastPaymentError: PaymentError?
    public var amountReceived: Int?
    public var created: Int?
    public var cancellationReason: String?

    enum CodingKeys: String, CodingKey {
        case id, status, amount, currency, customer, metadata, created
        case latestCharge = "latest_charge", lastPaymentError = "last_payment_error", amountReceived = "amount_received"
        case cancellationReason = "cancellation_reason"
    }
}

public struct Refund: Decodable, Sendable, Equatable {
    public var id: String
    public var amount: Int
    public var status: String?
    public var charge: StripeID?
    public var paymentIntent: StripeID?
    public var reason: String?
    public var currency: String?
    public var created: Int?
    public var metadata: [String: String]?
    /// Why a failed refund failed: lost_or_stolen_card, expired_or_canceled_card, declined, ...
    public var failureReason: String?

    enum CodingKeys: String, CodingKey {
        case id, amount, status, charge, reason, currency, created, metadata, paymentIntent = "payment_intent",
             failureReason = "failure_reason"
    }
}

public struct SetupIntent: Decodable, Sendable, Equatable {
    public var id: String
    public var status: String
    public var customer: StripeID?
    public var paymentMethod: StripeID?
    public var usage: String?
    public var metadata: [String: String]?
    public var created: Int?
    /// Why the last attempt to save the payment method failed.
    public var lastSetupError: PaymentError?

    enum CodingKeys: String, CodingKey {
        case id, status, customer, usage, metadata, created, paymentMethod = "payment_method", lastSetupError = "last_setup_error"
    }
}

public struct Charge: Decodable, Sendable, Equatable {
    public var id: String
    public var amount: Int
    public var amountRefunded: Int?
    public var currency: String
    public var customer: StripeID?
    public var paymentIntent: StripeID?
    public var metadata: [String: String]?
    public var status: String?
    public var paid: Bool?
    public var created: Int?
    /// Absent by default in current API versions; read when present.
    public var refunds: StripeList<Refund>?

    enum CodingKeys: String, CodingKey {
        case id, amount, currency, customer, metadata, status, paid, created, refunds
        case amountRefunded = "amount_refunded", paymentIntent = "payment_intent"
    }
}

public struct Dispute: Decodable, Sendable, Equatable {
    public var id: String
    public var amount: Int
    public var currency: String
    public var charge: StripeID?
    public var paymentIntent: StripeID?
    public var reason: String?
    public var status: String
    public var created: Int?

    enum CodingKeys: String, CodingKey { case id, amount, currency, charge, reason, status, created, paymentIntent = "payment_intent" }
}

public struct Invoice: Decodable, Sendable, Equatable {
    public var id: String
    public var status: String?
    public var customer: StripeID?
    public var amountDue: Int?
    public var amountPaid: Int?
    public var amountRemaining: Int?
    public var currency: String?
    public var number: String?
    public var hostedInvoiceURL: String?
    public var attemptCount: Int?
    public var nextPaymentAttempt: Int?
    public var periodStart: Int?
    public var periodEnd: Int?
    public var created: Int?
    public var metadata: [String: String]?
    /// Current API versions: the subscription is in `parent.subscription_details`.
    public var parent: Parent?
    /// Older-version fallback (before Basil).
    public var subscription: StripeID?
    /// Older-version fallback (before Basil): since then payments come as `invoice_payment` objects.
    public var paymentIntent: StripeID?
    /// The payments that paid it: only when asked for with `expand[]=payments`, never in a webhook.
    public var payments: StripeList<InvoicePayment>?

    /// Fields this type reads for payloads of API versions before the pinned one.
    public static let olderVersionFields: Set<String> = ["subscription", "payment_intent"]

    public struct Parent: Decodable, Sendable, Equatable {
        public var subscriptionDetails: SubscriptionDetails?
        enum CodingKeys: String, CodingKey { case subscriptionDetails = "subscription_details" }
    }

    public struct SubscriptionDetails: Decodable, Sendable, Equatable {
        public var subscription: StripeID?
        public var metadata: [String: String]?
    }

    /// The subscription it bills, in current or older shapes.
    public var subscriptionID: String? { parent?.subscriptionDetails?.subscription?.id ?? subscription?.id }

    /// The PaymentIntent that paid it, in current or older shapes.
    public var paymentIntentID: String? {
        paymentIntent?.id ?? payments?.data.compactMap { $0.payment?.paymentIntent?.id }.first
    }

    enum CodingKeys: String, CodingKey {
        case id, status, customer, currency, number, created, metadata, parent, subscription, payments
        case amountDue = "amount_due", amountPaid = "amount_paid", amountRemaining = "amount_remaining"
        case hostedInvoiceURL = "hosted_invoice_url", attemptCount = "attempt_count", nextPaymentAttempt = "next_payment_attempt"
        case periodStart = "period_start", periodEnd = "period_end", paymentIntent = "payment_intent"
    }
}

/// One payment towards an invoice (`invoice_payment.paid` carries it): how current API versions link an invoice to
/// the PaymentIntent that paid it.
public struct InvoicePayment: Decodable, Sendable, Equatable {
    public var id: String?
    public var invoice: StripeID?
    public var status: String?
    public var amountPaid: Int?
    public var currency: String?
    public var payment: Payment?
    public var created: Int?

    public struct Payment: Decodable, Sendable, Equatable {
        public var type: String?
        public var paymentIntent: StripeID?
        public var charge: StripeID?
        enum CodingKeys: String, CodingKey { case type, charge, paymentIntent = "payment_intent" }
    }

    enum CodingKeys: String, CodingKey { case id, invoice, status, currency, payment, created, amountPaid = "amount_paid" }
}

/// An event as listed by `GET /v1/events`: its header fields, and the whole JSON as Stripe sent it (for the inbox).
public struct StripeEvent: Sendable, Equatable {
    public var id: String
    public var type: String
    public var created: Int
    public var livemode: Bool
    public var raw: Data

    struct Header: Decodable {
        var id: String
        var type: String
        var created: Int
        var livemode: Bool?
    }

    public static func decode(_ raw: Data) throws -> StripeEvent {
        let header = try JSONDecoder().decode(Header.self, from: raw)
        return StripeEvent(id: header.id, type: header.type, created: header.created, livemode: header.livemode ?? false, raw: raw)
    }
}

extension StripeClient {
    /// A customer for the tenant; in test mode, on `testClock` when given (it then lives in that clock's time).
    public func createCustomer(
        email: String, name: String, tenantID: String, testClock: String? = nil, idempotencyKey: String
    ) async throws(StripeError) -> Customer {
        var parameters: FormParameters = [
            "email": .string(email), "name": .string(name), "metadata": ["tenant_id": .string(tenantID)],
        ]
        if let testClock { parameters["test_clock"] = .string(testClock) }
        return try await send(.post, "/v1/customers", parameters, idempotencyKey: idempotencyKey)
    }

    /// Test mode only: a clock frozen at `frozenTime`, for customers whose subscriptions should live in simulated time.
    public func createTestClock(frozenTime: Int, name: String, idempotencyKey: String) async throws(StripeError) -> TestClock {
        try await send(.post, "/v1/test_helpers/test_clocks", ["frozen_time": .int(frozenTime), "name": .string(name)],
                       idempotencyKey: idempotencyKey)
    }

    public func retrieveTestClock(_ id: String) async throws(StripeError) -> TestClock {
        try await send(.get, "/v1/test_helpers/test_clocks/\(id)")
    }

    /// Starts moving the clock to `frozenTime`; Stripe answers `advancing` and is `ready` once all that falls due has
    /// happened (poll `retrieveTestClock`, or wait for `test_helpers.test_clock.ready`).
    public func advanceTestClock(_ id: String, to frozenTime: Int, idempotencyKey: String) async throws(StripeError) -> TestClock {
        try await send(.post, "/v1/test_helpers/test_clocks/\(id)/advance", ["frozen_time": .int(frozenTime)], idempotencyKey: idempotencyKey)
    }

    public func retrieveCustomer(_ id: String) async throws(StripeError) -> Customer {
        try await send(.get, "/v1/customers/\(id)")
    }

    /// Makes `paymentMethod` the customer's default for invoices and off-session payments.
    public func setDefaultPaymentMethod(customer: String, paymentMethod: String, idempotencyKey: String) async throws(StripeError) -> Customer {
        try await send(.post, "/v1/customers/\(customer)", ["invoice_settings": ["default_payment_method": .string(paymentMethod)]],
                       idempotencyKey: idempotencyKey)
    }

    public func retrieveSetupIntent(_ id: String) async throws(StripeError) -> SetupIntent {
        try await send(.get, "/v1/setup_intents/\(id)")
    }

    public func createCheckoutSession(_ parameters: FormParameters, idempotencyKey: String) async throws(StripeError) -> CheckoutSession {
        try await send(.post, "/v1/checkout/sessions", parameters, idempotencyKey: idempotencyKey)
    }

    public func retrieveCheckoutSession(_ id: String) async throws(StripeError) -> CheckoutSession {
        try await send(.get, "/v1/checkout/sessions/\(id)")
    }

    public func expireCheckoutSession(_ id: String, idempotencyKey: String) async throws(StripeError) -> CheckoutSession {
        try await send(.post, "/v1/checkout/sessions/\(id)/expire", idempotencyKey: idempotencyKey)
    }

    public func createPortalSession(customer: String, returnURL: String, idempotencyKey: String) async throws(StripeError) -> PortalSession {
        try await send(.post, "/v1/billing_portal/sessions", ["customer": .string(customer), "return_url": .string(returnURL)],
                       idempotencyKey: idempotencyKey)
    }

    public func retrieveSubscription(_ id: String) async throws(StripeError) -> Subscription {
        try await send(.get, "/v1/subscriptions/\(id)")
    }

    /// Quantity or price changes (`items[0][id]`, `items[0][quantity]`/`[price]`, `proration_behavior`),
    /// `cancel_at_period_end` to schedule or undo a cancellation.
    public func updateSubscription(_ id: String, _ parameters: FormParameters, idempotencyKey: String) async throws(StripeError) -> Subscription {
        try await send(.post, "/v1/subscriptions/\(id)", parameters, idempotencyKey: idempotencyKey)
    }

    /// Cancels now.
    public func cancelSubscription(_ id: String) async throws(StripeError) -> Subscription {
        try await send(.delete, "/v1/subscriptions/\(id)")
    }

    public func createPaymentIntent(_ parameters: FormParameters, idempotencyKey: String) async throws(StripeError) -> PaymentIntent {
        try await send(.post, "/v1/payment_intents", parameters, idempotencyKey: idempotencyKey)
    }

    public func confirmPaymentIntent(_ id: String, _ parameters: FormParameters = [:], idempotencyKey: String) async throws(StripeError) -> PaymentIntent {
        try await send(.post, "/v1/payment_intents/\(id)/confirm", parameters, idempotencyKey: idempotencyKey)
    }

    public func retrievePaymentIntent(_ id: String) async throws(StripeError) -> PaymentIntent {
        try await send(.get, "/v1/payment_intents/\(id)")
    }

    public func createRefund(_ parameters: FormParameters, idempotencyKey: String) async throws(StripeError) -> Refund {
        try await send(.post, "/v1/refunds", parameters, idempotencyKey: idempotencyKey)
    }

    /// The invoice with its payments (`payments` is only there when expanded).
    public func retrieveInvoice(_ id: String) async throws(StripeError) -> Invoice {
        try await send(.get, "/v1/invoices/\(id)", ["expand": ["payments"]])
    }

    public func retrievePaymentMethod(_ id: String) async throws(StripeError) -> PaymentMethod {
        try await send(.get, "/v1/payment_methods/\(id)")
    }

    public func retrieveSubscriptionSchedule(_ id: String) async throws(StripeError) -> SubscriptionSchedule {
        try await send(.get, "/v1/subscription_schedules/\(id)")
    }

    /// Ends the schedule's control: the subscription goes on as it is now, with no scheduled change.
    public func releaseSubscriptionSchedule(_ id: String, idempotencyKey: String) async throws(StripeError) -> SubscriptionSchedule {
        try await send(.post, "/v1/subscription_schedules/\(id)/release", idempotencyKey: idempotencyKey)
    }

    /// One page of events created after `createdAfter`, oldest last as Stripe lists them; page on with `startingAfter`.
    public func listEvents(createdAfter: Int? = nil, startingAfter: String? = nil, limit: Int = 100) async throws(StripeError) -> (events: [StripeEvent], hasMore: Bool) {
        var parameters: FormParameters = ["limit": .int(limit)]
        if let createdAfter { parameters["created"] = ["gt": .int(createdAfter)] }
        if let startingAfter { parameters["starting_after"] = .string(startingAfter) }
        let body = try await sendRaw(.get, "/v1/events", parameters)
        do {
            guard let page = try JSONSerialization.jsonObject(with: body) as? [String: Any],
                  let items = page["data"] as? [Any]
            else { throw StripeError.unreadable("/v1/events: not a list") }
            let events = try items.map { try StripeEvent.decode(try JSONSerialization.data(withJSONObject: $0)) }
            return (events, page["has_more"] as? Bool ?? false)
        } catch let error as StripeError {
            throw error
        } catch {
            throw .unreadable("/v1/events: \(error)")
        }
    }
}
