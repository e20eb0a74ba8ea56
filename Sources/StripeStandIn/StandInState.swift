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
