import Foundation

/// The calls the product makes, one typed method each, every POST under the caller's idempotency key.
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
