/// A Checkout Session to create (`POST /v1/checkout/sessions`), typed: what the product asks of Checkout, turned into
/// Stripe's form in one place (`parameters`).
public struct CheckoutSessionRequest: Sendable {
    public enum Mode: String, Sendable {
        case payment, subscription, setup
    }

    /// What the session sells: a catalog price, or an amount made up for this session (credits, an invoice).
    public enum LineItem: Sendable, Equatable {
        case price(id: String, quantity: Int)
        case amount(currency: String, unitAmount: Int, product: String, quantity: Int)
    }

    public var mode: Mode
    public var customer: String
    /// The tenant: Checkout's own reference back to who opened it.
    public var clientReferenceID: String
    public var successURL: String
    public var cancelURL: String
    public var lineItems: [LineItem]
    /// On the session, and on the PaymentIntent (payment mode) or SetupIntent (setup mode) it makes.
    public var metadata: [(String, FormValue)]
    /// Subscription mode: the subscription's own metadata, and its free trial.
    public var subscriptionMetadata: [(String, FormValue)]
    public var trialPeriodDays: Int?
    public var allowPromotionCodes: Bool
    /// Setup mode: which payment methods may be saved, and the currency of the charges they are saved for.
    public var allowedPaymentMethodTypes: [String]
    public var currency: String?

    public init(
        mode: Mode, customer: String, clientReferenceID: String, successURL: String, cancelURL: String, lineItems: [LineItem] = [],
        metadata: [(String, FormValue)], subscriptionMetadata: [(String, FormValue)] = [], trialPeriodDays: Int? = nil,
        allowPromotionCodes: Bool = false, allowedPaymentMethodTypes: [String] = [], currency: String? = nil
    ) {
        self.mode = mode
        self.customer = customer
        self.clientReferenceID = clientReferenceID
        self.successURL = successURL
        self.cancelURL = cancelURL
        self.lineItems = lineItems
        self.metadata = metadata
        self.subscriptionMetadata = subscriptionMetadata
        self.trialPeriodDays = trialPeriodDays
        self.allowPromotionCodes = allowPromotionCodes
        self.allowedPaymentMethodTypes = allowedPaymentMethodTypes
        self.currency = currency
    }

    /// Stripe's form for it, in a fixed order (a repeat under the same idempotency key sends the very same body).
    public var parameters: FormParameters {
        var form: FormParameters = [
            "mode": .string(mode.rawValue), "customer": .string(customer), "client_reference_id": .string(clientReferenceID),
            "success_url": .string(successURL), "cancel_url": .string(cancelURL),
        ]
        if !allowedPaymentMethodTypes.isEmpty { form["allowed_payment_method_types"] = .list(allowedPaymentMethodTypes.map(FormValue.string)) }
        if let currency { form["currency"] = .string(currency) }
        if !lineItems.isEmpty { form["line_items"] = .list(lineItems.map(\.form)) }
        form["metadata"] = .fields(metadata)
        switch mode {
        case .payment: form["payment_intent_data"] = ["metadata": .fields(metadata)]
        case .setup: form["setup_intent_data"] = ["metadata": .fields(metadata)]
        case .subscription:
            var data: [(String, FormValue)] = [("metadata", .fields(subscriptionMetadata))]
            if let trialPeriodDays { data.append(("trial_period_days", .int(trialPeriodDays))) }
            form["subscription_data"] = .fields(data)
        }
        if allowPromotionCodes { form["allow_promotion_codes"] = true }
        return form
    }
}

extension CheckoutSessionRequest.LineItem {
    var form: FormValue {
        switch self {
        case .price(let id, let quantity):
            ["price": .string(id), "quantity": .int(quantity)]
        case .amount(let currency, let unitAmount, let product, let quantity):
            [
                "price_data": ["currency": .string(currency), "unit_amount": .int(unitAmount), "product_data": ["name": .string(product)]],
                "quantity": .int(quantity),
            ]
        }
    }
}

extension StripeClient {
    /// Opens a Checkout Session.
    public func createCheckoutSession(_ request: CheckoutSessionRequest, idempotencyKey: String) async throws(StripeError) -> CheckoutSession {
        try await createCheckoutSession(request.parameters, idempotencyKey: idempotencyKey)
    }
}
