import Foundation

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

/// A Stripe test clock (test mode only): the simulated time of the customers made on it.
public struct TestClock: Decodable, Sendable, Equatable {
    public var id: String
    public var status: String
    public var frozenTime: Int
    public var name: String?

    enum CodingKeys: String, CodingKey { case id, status, name, frozenTime = "frozen_time" }
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
