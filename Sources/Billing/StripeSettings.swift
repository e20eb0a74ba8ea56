import Foundation
import StripeAPI

/// How the API uses Stripe.
public struct StripeSettings: Sendable {
    /// nil when no Stripe is configured: money paths answer PRECONDITION_FAILED saying so.
    public var client: StripeClient?
    /// `{BILLING_PUBLIC_URL}`: Checkout returns to `{publicURL}/billing?checkout={CHECKOUT_SESSION_ID}`.
    public var publicURL: String
    public var allowPromotionCodes: Bool
    /// Test mode only (`BILLING_STRIPE_TEST_CLOCKS`): each tenant's Stripe customer is made on a test clock of its own,
    /// so that its renewals, retries and trial ends can be run by advancing the clock.
    public var testClocks: Bool

    public init(
        client: StripeClient?, publicURL: String, allowPromotionCodes: Bool = false, testClocks: Bool = false
    ) {
        self.client = client
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        self.allowPromotionCodes = allowPromotionCodes
        self.testClocks = testClocks
    }

    var returnURL: String { "\(publicURL)/billing?checkout={CHECKOUT_SESSION_ID}" }
    /// Where Checkout's back link goes: the same page, told that nothing was paid.
    var cancelURL: String { "\(returnURL)&canceled=true" }
}
