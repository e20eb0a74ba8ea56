import Foundation

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
