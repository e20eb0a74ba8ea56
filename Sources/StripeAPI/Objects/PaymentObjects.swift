import Foundation

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
