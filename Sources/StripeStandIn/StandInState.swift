import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import StripeAPI

/// The stand-in's state: Stripe objects as Stripe shapes them (the templates of `Templates`, filled in), the
/// idempotency records, injected faults and the event log. Confined to this actor, so plain dictionaries suffice.
public actor StandInState {
    let configuration: StandInConfiguration
    let logger: Logger
    let http: HTTPClient
    let templates: [String: Any]

    var objects: [String: [String: Any]] = [:]
    var events: [[String: Any]] = []
    var failedDeliveries = 0
    var idempotency: [String: (fingerprint: String, response: StandInResponse, storedAt: Int)] = [:]
    /// Keys of POSTs being executed now: another request with one of them is answered 409.
    var keysInFlight: Set<String> = []
    /// Requests refused for their parameters (Stripe's definitions or `StandInRules`), as `METHOD path: problem`.
    var refused: [String] = []
    /// Seconds added to the wall clock (`advanceClock(by:)`), for tests of what Stripe does as time passes.
    var clockShift = 0
    /// The test clock whose time the request (or clock run) under way lives in: its customer's.
    var clockInScope: String?
    var faults: [StandInFault] = []
    var delivered: [String: Int] = [:]
    var sequence = 0
    /// While held, the webhooks of events emitted from then on wait (Stripe being slow to send them) until released.
    var webhooksHeld = false
    var heldEvents: Set<String> = []
    var heldDeliveries: [CheckedContinuation<Void, Never>] = []

    public init(configuration: StandInConfiguration, http: HTTPClient = .shared, logger: Logger = Logger(label: "stand-in")) {
        self.configuration = configuration
        self.http = http
        self.logger = logger
        self.templates = (try? JSONSerialization.jsonObject(with: Data(Templates.json.utf8))) as? [String: Any] ?? [:]
    }

    // MARK: Control (for tests and operators of the stand-in)

    public func inject(_ fault: StandInFault) { faults.append(fault) }
    public func clearFaults() { faults.removeAll() }

    /// How many objects of a kind exist ("customer", "checkout.session", ...).
    public func count(of kind: String) -> Int { objects.values.filter { $0["object"] as? String == kind }.count }

    /// How many webhook deliveries of an event succeeded (0 while still retrying).
    public func deliveries(of eventID: String) -> Int { delivered[eventID] ?? 0 }

    public func eventTypes() -> [String] { events.compactMap { $0["type"] as? String } }

    /// How many webhook deliveries failed (and were retried) so far.
    public func failedDeliveryCount() -> Int { failedDeliveries }

    /// The id of every event emitted, oldest first.
    public func eventIDs() -> [String] { events.compactMap { $0["id"] as? String } }

    /// Every PaymentIntent that succeeded, with its amount and metadata: a test counts the charges per top-up.
    public func succeededPaymentIntents() -> [(id: String, amount: Int, metadata: [String: String])] {
        objects.values
            .filter { $0["object"] as? String == "payment_intent" && $0["status"] as? String == "succeeded" }
            .map { ($0["id"] as? String ?? "", $0["amount"] as? Int ?? 0, ($0["metadata"] as? [String: Any] ?? [:]).compactMapValues { "\($0)" }) }
    }

    /// Every request refused for its parameters so far: a client that Stripe would accept leaves this empty.
    public func refusedRequests() -> [String] { refused }

    /// Holds the webhooks of every event emitted from now on until `releaseWebhooks()`, as when Stripe is slow to send
    /// them. Deliveries already under way (and their retries) are not held.
    public func holdWebhooks() { webhooksHeld = true }

    /// Sends the held webhooks (each on its own, in no particular order) and stops holding.
    public func releaseWebhooks() {
        webhooksHeld = false
        heldEvents.removeAll()
        let waiting = heldDeliveries
        heldDeliveries.removeAll()
        for delivery in waiting { delivery.resume() }
    }

    /// How many events' webhooks are held until `releaseWebhooks()`.
    public func heldWebhookCount() -> Int { heldEvents.count }

    /// Waits while the event was emitted during a hold that is still on.
    func waitIfHeld(_ eventID: String) async {
        guard heldEvents.contains(eventID) else { return }
        await withCheckedContinuation { heldDeliveries.append($0) }
    }

    // MARK: API

    public func handle(_ request: StandInRequest) async -> StandInResponse {
        guard let authorization = request.authorization, authorization.hasPrefix("Bearer sk_") else {
            return Self.error(401, type: "invalid_request_error",
                              message: "Invalid API Key provided: send Authorization: Bearer sk_test_...")
        }
        if let version = request.stripeVersion, version != StripeConfiguration.apiVersion {
            return Self.error(400, type: "invalid_request_error",
                              message: "Invalid Stripe API version: \(version). The stand-in answers in \(StripeConfiguration.apiVersion) only.")
        }
        guard StripeDefinitions.pinned.endpoint(method: request.method, path: request.path) != nil else {
            return Self.error(404, type: "invalid_request_error",
                              message: "Unrecognized request URL (\(request.method): \(request.path)). The stand-in implements the subset the billing server uses.")
        }
        // Stripe checks parameters before it executes anything, so a refusal here is never stored under the key.
        let pairs = FormParameters.decodePairs(request.method == "POST" ? request.body : request.query)
        if let problem = StripeDefinitions.pinned.check(method: request.method, path: request.path, pairs: pairs)
            ?? StandInRules.check(method: request.method, path: request.path, params: FormDecoding.decode(request.method == "POST" ? request.body : request.query))
        {
            refused.append("\(request.method) \(request.path): \(problem)")
            return Self.error(400, type: "invalid_request_error", code: problem.code, param: problem.param, message: problem.message)
        }
        if let key = request.idempotencyKey, key.count > 255 {
            return Self.error(400, type: "invalid_request_error",
                              message: "Idempotency-Key is \(key.count) characters long; keys are at most 255 characters.")
        }
        guard request.method == "POST", let key = request.idempotencyKey else {
            return await executeWithFaults(request)
        }
        let fingerprint = Self.fingerprint(request)
        if let record = idempotency[key], wallNow - record.storedAt >= Self.idempotencyWindow {
            idempotency[key] = nil  // Stripe keeps a key for 24 hours; after that it is a new request.
        }
        if let record = idempotency[key] {
            guard record.fingerprint == fingerprint else {
                return Self.error(400, type: "idempotency_error",
                                  message: "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '\(key)' if you meant to execute a different request.")
            }
            var replay = record.response
            replay.headers.append(("Idempotent-Replayed", "true"))
            return replay
        }
        guard !keysInFlight.contains(key) else {
            return Self.error(409, type: "idempotency_error", code: "idempotency_key_in_use",
                              message: "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): \(key). Please try again later.")
        }
        keysInFlight.insert(key)
        defer { keysInFlight.remove(key) }
        let response = await executeWithFaults(request)
        // Stripe keeps what an executed request answered, errors included; a 429 or 5xx before execution, a
        // validation 400 and a conflict are not kept.
        if response.status < 500 && ![400, 409, 429].contains(response.status) || response.storeUnderKey {
            idempotency[key] = (fingerprint, response, wallNow)
        }
        return response
    }

    /// How long Stripe keeps an idempotency key: 24 hours.
    static let idempotencyWindow = 24 * 3600

    /// Runs the request, after the next injected fault that matches it.
    func executeWithFaults(_ request: StandInRequest) async -> StandInResponse {
        guard let index = faults.firstIndex(where: { request.path.hasPrefix($0.path ?? "") }) else {
            return await execute(request)
        }
        let fault = faults[index]
        if let count = fault.count, count > 1 { faults[index].count = count - 1 } else { faults.remove(at: index) }
        switch fault.kind {
        case .rateLimited:
            return Self.error(429, type: "invalid_request_error", code: "rate_limit", message: "Too many requests hit the API too quickly.")
        case .errorBeforeExecution:
            return Self.error(500, type: "api_error", message: "An unexpected error occurred (injected, before execution).")
        case .cardDeclined:
            return Self.error(402, type: "card_error", code: "card_declined", declineCode: "generic_decline",
                              message: "Your card was declined.")
        case .invalidParam:
            return Self.error(400, type: "invalid_request_error", code: "parameter_invalid", param: "injected",
                              message: "Invalid parameter (injected).")
        case .delay:
            try? await Task.sleep(for: .milliseconds(fault.delayMilliseconds ?? 1000))
            return await execute(request)
        case .errorAfterExecution:
            let executed = await execute(request)
            var failure = Self.error(500, type: "api_error", message: "An unexpected error occurred (injected, after execution).")
            // Executed, so Stripe keeps this answer under the key and replays it.
            failure.storeUnderKey = (200..<300).contains(executed.status)
            return failure
        }
    }

    static func fingerprint(_ request: StandInRequest) -> String { "\(request.method) \(request.path) \(request.body)" }

    func execute(_ request: StandInRequest) async -> StandInResponse {
        let parts = request.path.split(separator: "/").map(String.init)
        let params = FormDecoding.decode(request.method == "GET" ? request.query : request.body)
        let segments = Array(parts.dropFirst())
        /// The id in `pattern` (`customers/:id`), if the request's method and path match it.
        func match(_ method: String, _ pattern: String) -> String? {
            let expected = pattern.split(separator: "/").map(String.init)
            guard request.method == method, expected.count == segments.count else { return nil }
            var id = ""
            for (want, got) in zip(expected, segments) {
                if want == ":id" { id = got } else if want != got { return nil }
            }
            return id
        }
        // What is done for a customer on a test clock happens at the clock's time.
        clockInScope = clock(for: params, path: segments)
        defer { clockInScope = nil }
        if match("POST", "customers") != nil { return createCustomer(params) }
        if let id = match("GET", "customers/:id") { return retrieve(id, kind: "customer") }
        if let id = match("POST", "customers/:id") { return updateCustomer(id, params) }
        if let id = match("GET", "setup_intents/:id") { return retrieve(id, kind: "setup_intent") }
        if let id = match("GET", "payment_methods/:id") { return retrievePaymentMethod(id) }
        if match("POST", "checkout/sessions") != nil { return createCheckoutSession(params) }
        if let id = match("GET", "checkout/sessions/:id") { return retrieve(id, kind: "checkout.session") }
        if let id = match("POST", "checkout/sessions/:id/expire") { return expireCheckoutSession(id) }
        if match("POST", "billing_portal/sessions") != nil { return createPortalSession(params) }
        if let id = match("GET", "subscriptions/:id") { return retrieve(id, kind: "subscription") }
        if let id = match("POST", "subscriptions/:id") { return updateSubscription(id, params) }
        if let id = match("DELETE", "subscriptions/:id") { return cancelSubscription(id) }
        if match("POST", "payment_intents") != nil { return createPaymentIntent(params) }
        if let id = match("POST", "payment_intents/:id/confirm") { return confirmPaymentIntent(id, params) }
        if let id = match("GET", "payment_intents/:id") { return retrieve(id, kind: "payment_intent") }
        if match("POST", "refunds") != nil { return createRefund(params) }
        if let id = match("GET", "charges/:id") { return retrieve(id, kind: "charge") }
        if let id = match("GET", "invoices/:id") { return retrieveInvoice(id, params) }
        if let id = match("GET", "subscription_schedules/:id") { return retrieve(id, kind: "subscription_schedule") }
        if let id = match("POST", "subscription_schedules/:id/release") { return releaseSchedule(id) }
        if match("GET", "events") != nil { return listEvents(params) }
        if match("POST", "test_helpers/test_clocks") != nil { return createTestClock(params) }
        if let id = match("GET", "test_helpers/test_clocks/:id") { return retrieve(id, kind: Self.clockKind) }
        if let id = match("POST", "test_helpers/test_clocks/:id/advance") { return advanceTestClock(id, params) }
        if let id = match("DELETE", "test_helpers/test_clocks/:id") { return deleteTestClock(id) }
        switch request.method {
        default:
            return Self.error(404, type: "invalid_request_error",
                              message: "Unrecognized request URL (\(request.method): \(request.path)). The stand-in implements the subset the billing server uses.")
        }
    }

    // MARK: Objects

    func newID(_ prefix: String) -> String {
        sequence += 1
        let random = (0..<14).map { _ in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".randomElement()! }
        return "\(prefix)_\(String(random))\(sequence)"
    }

    /// The time of what is being done: a test clock's frozen time for its customers, else the wall clock's.
    var now: Int {
        if let clock = clockInScope, let frozen = objects[clock]?["frozen_time"] as? Int { return frozen }
        return wallNow
    }

    /// The stand-in's own time, whatever clock is in scope (idempotency keys expire by it).
    var wallNow: Int { Int(configuration.clock().timeIntervalSince1970) + clockShift }

    /// Moves the stand-in's own clock forward (idempotency keys expire by it).
    public func advanceClock(by seconds: Int) { clockShift += seconds }

    /// A new object of `kind` in Stripe's shape, with no example value left over (`StandInObjects`).
    func template(_ kind: String) -> [String: Any] {
        StandInObjects.fresh(kind, example: templates[kind] as? [String: Any] ?? ["object": kind], now: now)
    }

    func store(_ object: [String: Any]) -> StandInResponse {
        objects[object["id"] as! String] = object
        return Self.json(object)
    }

    func retrieve(_ id: String, kind: String) -> StandInResponse {
        guard let object = objects[id], object["object"] as? String == kind else {
            return Self.error(404, type: "invalid_request_error", code: "resource_missing", param: "id",
                              message: "No such \(kind): '\(id)'")
        }
        return Self.json(object)
    }

    func createCustomer(_ params: [String: Any]) -> StandInResponse {
        if let clock = params["test_clock"] as? String {
            guard objects[clock]?["object"] as? String == Self.clockKind else {
                return Self.noSuch("test_helpers.test_clock", clock, param: "test_clock")
            }
            guard customers(on: clock).count < 3 else {
                return Self.error(400, type: "invalid_request_error", param: "test_clock",
                                  message: "Test clock \(clock) has 3 customers already, the most a test clock can have; create another test clock.")
            }
        }
        var customer = template("customer")
        customer["id"] = newID("cus")
        customer["created"] = now
        customer["email"] = params["email"] as? String ?? NSNull()
        customer["name"] = params["name"] as? String ?? NSNull()
        customer["metadata"] = params["metadata"] as? [String: Any] ?? [:]
        customer["test_clock"] = params["test_clock"] as? String ?? NSNull()
        customer["livemode"] = false
        let response = store(customer)
        emit("customer.created", customer)
        return response
    }

    func price(_ id: String) -> StandInPrice? { configuration.prices.first { $0.id == id } }

    func createCheckoutSession(_ params: [String: Any]) -> StandInResponse {
        guard let mode = params["mode"] as? String, ["payment", "subscription", "setup"].contains(mode) else {
            return Self.missing("mode", "payment, subscription or setup")
        }
        guard let successURL = params["success_url"] as? String else {
            return Self.missing("success_url")
        }
        if let customer = params["customer"] as? String, objects[customer] == nil {
            return Self.noSuch("customer", customer, param: "customer")
        }
        var total = 0
        var currency = "usd"
        let items = params["line_items"] as? [Any] ?? []
        if mode != "setup" && items.isEmpty {
            return Self.missing("line_items")
        }
        for (index, raw) in items.enumerated() {
            let item = raw as? [String: Any] ?? [:]
            let quantity = Int(item["quantity"] as? String ?? "1") ?? 1
            if let priceID = item["price"] as? String {
                guard let price = price(priceID) else {
                    return Self.noSuch("price", priceID, param: "line_items[\(index)][price]")
                }
                if mode == "subscription" && price.interval == nil {
                    return Self.error(400, type: "invalid_request_error", param: "line_items[\(index)][price]",
                                      message: "A subscription Checkout Session needs recurring prices.")
                }
                total += price.unitAmount * quantity
                currency = price.currency
            } else if let data = item["price_data"] as? [String: Any], let amount = Int(data["unit_amount"] as? String ?? "") {
                total += amount * quantity
                currency = data["currency"] as? String ?? currency
            } else {
                return Self.error(400, type: "invalid_request_error", code: "parameter_missing", param: "line_items[\(index)][price]",
                                  message: "Each line item needs price or price_data.")
            }
        }
        var session = template("checkout.session")
        let id = newID("cs_test")
        session["id"] = id
        session["object"] = "checkout.session"
        session["created"] = now
        session["expires_at"] = now + 24 * 3600
        session["mode"] = mode
        session["status"] = "open"
        session["payment_status"] = mode == "setup" ? "no_payment_required" : "unpaid"
        session["success_url"] = successURL
        session["cancel_url"] = params["cancel_url"] as? String ?? NSNull()
        session["client_reference_id"] = params["client_reference_id"] as? String ?? NSNull()
        session["customer"] = params["customer"] as? String ?? NSNull()
        session["customer_email"] = params["customer_email"] as? String ?? NSNull()
        session["metadata"] = params["metadata"] as? [String: Any] ?? [:]
        // A trial is free today: Stripe's session totals what is due now, and the first charge comes when it ends.
        let trialDays = Int((params["subscription_data"] as? [String: Any])?["trial_period_days"] as? String ?? "") ?? 0
        let dueNow = mode == "subscription" && trialDays > 0 ? 0 : total
        session["amount_total"] = dueNow
        session["amount_subtotal"] = dueNow
        session["_recurring_total"] = total
        session["currency"] = currency
        session["payment_intent"] = NSNull()
        session["subscription"] = NSNull()
        session["allow_promotion_codes"] = (params["allow_promotion_codes"] as? String) == "true" ? true : NSNull()
        session["url"] = "\(configuration.publicURL)/checkout/\(id)"
        session["livemode"] = false
        // Kept for completion: what the hosted page needs to create the payment or subscription.
        session["_line_items"] = items
        session["_payment_intent_data"] = params["payment_intent_data"] as? [String: Any] ?? [:]
        session["_subscription_data"] = params["subscription_data"] as? [String: Any] ?? [:]
        session["_setup_intent_data"] = params["setup_intent_data"] as? [String: Any] ?? [:]
        session["setup_intent"] = NSNull()
        objects[id] = session
        return Self.json(Self.public(session))
    }

    func expireCheckoutSession(_ id: String) -> StandInResponse {
        guard var session = objects[id], session["object"] as? String == "checkout.session" else {
            return retrieve(id, kind: "checkout.session")
        }
        guard session["status"] as? String == "open" else {
            return Self.error(400, type: "invalid_request_error", message: "Only open Checkout Sessions can be expired.")
        }
        session["status"] = "expired"
        objects[id] = session
        emit("checkout.session.expired", Self.public(session))
        return Self.json(Self.public(session))
    }

    func createPortalSession(_ params: [String: Any]) -> StandInResponse {
        guard let customer = params["customer"] as? String, objects[customer] != nil else {
            return Self.error(400, type: "invalid_request_error", code: "resource_missing", param: "customer",
                              message: "No such customer: '\(params["customer"] as? String ?? "")'")
        }
        var session = template("billing_portal.session")
        let id = newID("bps")
        session["id"] = id
        session["created"] = now
        session["customer"] = customer
        session["return_url"] = params["return_url"] as? String ?? NSNull()
        session["url"] = "\(configuration.publicURL)/portal/\(id)"
        session["livemode"] = false
        session["flow"] = NSNull()
        return store(session)
    }

    func cancelSubscription(_ id: String) -> StandInResponse {
        guard var subscription = objects[id], subscription["object"] as? String == "subscription" else {
            return retrieve(id, kind: "subscription")
        }
        subscription["status"] = "canceled"
        subscription["canceled_at"] = now
        subscription["ended_at"] = now
        objects[id] = subscription
        emit("customer.subscription.deleted", subscription)
        return Self.json(subscription)
    }

    func listEvents(_ params: [String: Any]) -> StandInResponse {
        let limit = min(max(Int(params["limit"] as? String ?? "10") ?? 10, 1), 100)
        let createdAfter = Int((params["created"] as? [String: Any])?["gt"] as? String ?? "") ?? Int.min
        var newestFirst = events.reversed().filter { ($0["created"] as? Int ?? 0) > createdAfter }
        if let after = params["starting_after"] as? String, let index = newestFirst.firstIndex(where: { $0["id"] as? String == after }) {
            newestFirst = Array(newestFirst[(index + 1)...])
        }
        let page = Array(newestFirst.prefix(limit))
        return Self.json(["object": "list", "url": "/v1/events", "has_more": newestFirst.count > page.count, "data": page])
    }

    func list(_ items: [[String: Any]], url: String) -> [String: Any] {
        ["object": "list", "data": items, "has_more": false, "total_count": items.count, "url": url]
    }

    func priceObject(_ price: StandInPrice) -> [String: Any] {
        var object = template("price")
        object["id"] = price.id
        object["unit_amount"] = price.unitAmount
        object["unit_amount_decimal"] = String(price.unitAmount)
        object["currency"] = price.currency
        object["type"] = price.interval == nil ? "one_time" : "recurring"
        object["recurring"] = price.interval.map { ["interval": $0, "interval_count": 1, "usage_type": "licensed", "meter": NSNull(), "trial_period_days": NSNull()] as [String: Any] } ?? NSNull()
        object["livemode"] = false
        return object
    }

    /// The legacy `plan` view of a price, as Stripe still sends on subscription items.
    func planObject(_ price: StandInPrice) -> [String: Any] {
        var plan = template("plan")
        plan["id"] = price.id
        plan["amount"] = price.unitAmount
        plan["amount_decimal"] = String(price.unitAmount)
        plan["currency"] = price.currency
        plan["interval"] = price.interval ?? "month"
        plan["interval_count"] = 1
        plan["active"] = true
        plan["livemode"] = false
        plan["usage_type"] = "licensed"
        plan["billing_scheme"] = "per_unit"
        return plan
    }

    // MARK: Responses

    /// Internal fields (prefixed `_`) never leave the stand-in.
    static func `public`(_ object: [String: Any]) -> [String: Any] { object.filter { !$0.key.hasPrefix("_") } }

    static func json(_ object: [String: Any], status: Int = 200) -> StandInResponse {
        let data = (try? JSONSerialization.data(withJSONObject: Self.public(object), options: [.sortedKeys])) ?? Data("{}".utf8)
        return StandInResponse(status: status, body: data, headers: [("Content-Type", "application/json"), ("Request-Id", Self.requestID())])
    }

    /// Stripe's refusal for a required param that is absent.
    static func missing(_ param: String, _ hint: String = "") -> StandInResponse {
        error(400, type: "invalid_request_error", code: "parameter_missing", param: param,
              message: "Missing required param: \(param)\(hint.isEmpty ? "" : " (\(hint))").")
    }

    /// Stripe's refusal for an id that names nothing.
    static func noSuch(_ kind: String, _ id: String, param: String) -> StandInResponse {
        error(400, type: "invalid_request_error", code: "resource_missing", param: param, message: "No such \(kind): '\(id)'")
    }

    static func error(_ status: Int, type: String, code: String? = nil, declineCode: String? = nil, param: String? = nil,
                      message: String) -> StandInResponse {
        var error: [String: Any] = ["type": type, "message": message]
        if let code { error["code"] = code }
        if let declineCode { error["decline_code"] = declineCode }
        if let param { error["param"] = param }
        var response = json(["error": error], status: status)
        if status == 429 || status >= 500 { response.headers.append(("Stripe-Should-Retry", "true")) }
        return response
    }

    /// A request id in Stripe's shape (`req_` and 14 characters).
    static func requestID() -> String {
        "req_" + String(String(UInt64.random(in: 0...UInt64.max), radix: 36).suffix(14))
    }
}
