import Billing
import BillingCore
import BillingServer
import BillingStore
import BillingDevSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import JSONRPC
import Logging
import NIOCore
import PostgresNIO
import StripeAPI
import StripeStandIn
import Testing

/// Stripe events built from Stripe's own example objects (the fixture file), delivered signed to the live server,
/// and processed by an inbox worker the test drives (so nothing depends on timing).
struct EventHarness {
    static let secret = "whsec_event_tests"
    /// The server runs no worker of its own: the test processes the inbox when it chooses.
    static let extra = [
        "STRIPE_WEBHOOK_SECRETS": secret, "BILLING_INBOX_WORKERS": "0",
        "BILLING_INBOX_RETRY_INITIAL_MS": "1", "BILLING_INBOX_RETRY_MAX_MS": "5", "BILLING_INBOX_MAX_ATTEMPTS": "3",
    ]

    let client: any TestClientProtocol
    let server: TestServer
    /// The configuration the server runs with (the drain processes as it would).
    var extra: [String: String] = EventHarness.extra
    /// When deliveries are signed: the server's clock (a test clock's time, in tests that move one).
    var signingTime: @Sendable () -> Date = Date.init

    // MARK: Objects

    static func object(_ kind: String, _ changes: [String: Any]) -> [String: Any] {
        var object = StripeFixtures.resources[kind] as? [String: Any] ?? [:]
        object.merge(changes) { $1 }
        return object
    }

    static func subscription(
        _ id: String, customer: String, price: String = "price_team_month", quantity: Int = 3, status: String = "active",
        periodEnd: Int = 1_900_000_000, cancelAtPeriodEnd: Bool = false, metadata: [String: String] = [:], legacy: Bool = false
    ) -> [String: Any] {
        var subscription = object("subscription", [
            "id": id, "customer": customer, "status": status, "cancel_at_period_end": cancelAtPeriodEnd, "metadata": metadata,
        ])
        var items = subscription["items"] as? [String: Any] ?? [:]
        var item = (items["data"] as? [[String: Any]])?.first ?? [:]
        item["quantity"] = quantity
        item["subscription"] = id
        if legacy {
            // An older payload: no price, the plan carries the id, and the period sits on the subscription.
            item["price"] = nil
            item["plan"] = ["id": price, "object": "plan"]
            item["current_period_end"] = nil
            subscription["current_period_end"] = periodEnd
        } else {
            var priceObject = item["price"] as? [String: Any] ?? [:]
            priceObject["id"] = price
            item["price"] = priceObject
            item["current_period_end"] = periodEnd
        }
        items["data"] = [item]
        subscription["items"] = items
        return subscription
    }

    static func event(_ id: String, _ type: String, _ object: [String: Any], created: Int, livemode: Bool = false) -> [UInt8] {
        var event = StripeFixtures.resources["event"] as? [String: Any] ?? [:]
        event["id"] = id
        event["type"] = type
        event["created"] = created
        event["livemode"] = livemode
        event["data"] = ["object": object]
        return Array((try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data())
    }

    // MARK: Delivery and processing

    /// Delivers each event and processes the inbox before the next arrives: the order of arrival is the order given.
    func deliverInTurn(_ bodies: [[UInt8]]) async throws {
        for body in bodies {
            try await deliver(body)
            try await drain()
        }
    }

    @discardableResult
    func deliver(_ body: [UInt8]) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        headers[.init("Stripe-Signature")!] = WebhookSignature.header(
            body: body, secrets: [Self.secret], timestamp: Int(signingTime().timeIntervalSince1970))
        let response = try await client.execute(uri: "/webhooks/stripe", method: .post, headers: headers, body: ByteBuffer(bytes: body))
        guard response.status == .ok else { throw TestFailure("delivery answered \(response.status): \(String(buffer: response.body))") }
        return response
    }

    /// Processes everything due, as the server's own role, with the server's configuration: passes until one
    /// finds nothing due (events an earlier pass made due again included), at most four.
    @discardableResult
    func drain(priceOverrides: [String: String] = [:]) async throws -> [ProcessOutcome] {
        let configuration = try TestServer.configuration(server.database, extra: extra, priceOverrides: priceOverrides)
        let stripe = server.stripe
        return try await server.database.withAppClient { database in
            let worker = makeInboxWorker(
                configuration: configuration,
                environment: try configuration.environment(database: database, logger: Logger(label: "test.worker"), stripe: stripe),
                metrics: nil)
            var outcomes: [ProcessOutcome] = []
            for _ in 0..<4 {
                let pass = try await worker.drain()
                outcomes += pass
                if pass.isEmpty { break }
            }
            return outcomes
        }
    }

    // MARK: Reading the outcome (as the superuser, across tenants)

    func owner<T: Sendable>(_ body: @Sendable (PostgresConnectionProxy) async throws -> T) async throws -> T {
        try await server.database.withOwnerClient { connection in try await body(PostgresConnectionProxy(connection: connection)) }
    }

    func eventStatus(_ id: String) async throws -> String? {
        try await owner { try await $0.first("SELECT status FROM billing.stripe_events WHERE event_id = '\(id)'") }
    }

    func eventError(_ id: String) async throws -> String? {
        try await owner { try await $0.first("SELECT last_error FROM billing.stripe_events WHERE event_id = '\(id)'") }
    }

    /// (available, frozen)
    func balance(_ tenant: UUID) async throws -> (Int, Int) {
        let available: Int = try await owner {
            try await $0.first("SELECT available::int FROM billing.credit_balances WHERE tenant_id = '\(tenant)'") ?? 0
        }
        let frozen: Int = try await owner {
            try await $0.first("SELECT frozen::int FROM billing.credit_balances WHERE tenant_id = '\(tenant)'") ?? 0
        }
        return (available, frozen)
    }

    func count(_ sql: String) async throws -> Int {
        try await owner { try await $0.first(sql) ?? -1 }
    }

    /// A tenant provisioned through the API and linked to a Stripe customer, as a finished checkout would leave it.
    func tenant(customer: String) async throws -> UUID {
        let tenant = try await server.provision(client)
        try await owner { try await $0.run("UPDATE billing.tenants SET stripe_customer_id = '\(customer)' WHERE id = '\(tenant)'") }
        return tenant
    }

    /// The current subscription as one comparable line.
    func subscriptionState(_ tenant: UUID) async throws -> String? {
        try await owner {
            try await $0.first("""
                SELECT concat_ws(' ', plan, billing_interval, seats, status, to_char(current_period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                 cancel_at_period_end::text, (past_due_since IS NOT NULL)::text)
                FROM billing.subscriptions WHERE tenant_id = '\(tenant)' AND is_current
                """)
        }
    }
}

/// Plain SQL for assertions, as the superuser (test set-up only: never the server's path).
struct PostgresConnectionProxy: Sendable {
    let connection: PostgresNIO.PostgresConnection

    func first<T: PostgresDecodable>(_ sql: String) async throws -> T? {
        for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test.sql")).decode(T.self) {
            return value
        }
        return nil
    }

    func run(_ sql: String) async throws {
        try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test.sql"))
    }
}

extension EventHarness {
    /// Delivers every event the stand-in has recorded (repeats change nothing) and processes them, as a webhook
    /// endpoint registered with it would have.
    func deliverStandInEvents() async throws {
        guard let stripe = server.stripe else { throw TestFailure("this test runs without the stand-in") }
        // Every page, newest first as Stripe lists them; delivered oldest first.
        var events: [StripeEvent] = []
        var page = try await stripe.listEvents()
        events += page.events
        while page.hasMore, let last = page.events.last {
            page = try await stripe.listEvents(startingAfter: last.id)
            events += page.events
        }
        for event in events.reversed() { try await deliver(Array(event.raw)) }
        try await drain()
    }

    /// A card saved through the stand-in's setup-mode Checkout (`outcome` decides which), confirmed by its webhooks.
    func saveCard(_ tenant: UUID, _ outcome: StandInState.CheckoutOutcome = .pay) async throws {
        let setup = try await client.rpc("billing.setupPaymentMethod", token: try await server.token(.admin, tenant: tenant))
        guard let session = setup["result"]?["sessionId"]?.stringValue else { throw TestFailure("setup failed: \(setup)") }
        _ = await server.standIn!.complete(session, outcome: outcome)
        try await deliverStandInEvents()
    }

    /// A subscription Checkout opened at the stand-in directly, as one made in Stripe's dashboard would be: this
    /// server never saw it. Returns its session id.
    func outsideCheckout(_ tenant: UUID) async throws -> String {
        let customer: String? = try await owner { try await $0.first("SELECT stripe_customer_id FROM billing.tenants WHERE id = '\(tenant)'") }
        guard let stripe = server.stripe, let customer else { throw TestFailure("this test needs the stand-in and a Stripe customer") }
        return try await stripe.createCheckoutSession([
            "mode": "subscription", "customer": .string(customer), "success_url": "https://billing.example/done",
            "line_items": [["price": "price_team_month", "quantity": 3]],
            "subscription_data": ["metadata": ["tenant_id": .string(tenant.uuidString.lowercased())]],
        ], idempotencyKey: UUID().uuidString).id
    }

    /// A paid subscription through Checkout on the stand-in, confirmed by its webhooks.
    func subscribe(_ tenant: UUID, plan: String, seats: Int? = nil, interval: String = "month") async throws {
        var params: [String: JSONValue] = ["plan": .string(plan), "interval": .string(interval)]
        if let seats { params["seats"] = .integer(seats) }
        let started = try await client.rpc("billing.checkout", params, token: try await server.token(.admin, tenant: tenant))
        guard let session = started["result"]?["sessionId"]?.stringValue else { throw TestFailure("checkout failed: \(started)") }
        _ = await server.standIn!.complete(session, outcome: .pay)
        try await deliverStandInEvents()
    }

    /// The tenant's (one) Stripe subscription id.
    func subscriptionID(_ tenant: UUID) async throws -> String {
        let id: String? = try await owner {
            try await $0.first("SELECT stripe_subscription_id FROM billing.subscriptions WHERE tenant_id = '\(tenant)'")
        }
        guard let id else { throw TestFailure("tenant \(tenant) has no subscription") }
        return id
    }

    /// The plan-change job as the server runs it, at `now`; the tenants it changed.
    func runPlanChangeJob(at now: Date) async throws -> [UUID] {
        guard let stripe = server.stripe else { throw TestFailure("this test runs without the stand-in") }
        let configuration = try TestServer.configuration(server.database)
        return try await server.database.withAppClient { database in
            try await PlanChangeJob(
                environment: try configuration.environment(database: database, logger: Logger(label: "job"), stripe: stripe)
            ).run(now: now, lead: .seconds(3600), logger: Logger(label: "job"))
        }
    }

    /// A paid top-up through Checkout on the stand-in, confirmed by its webhooks.
    func topUp(_ tenant: UUID, credits: Int) async throws {
        let started = try await client.rpc("billing.topUp", ["credits": .integer(credits)], token: try await server.token(.admin, tenant: tenant))
        guard let session = started["result"]?["sessionId"]?.stringValue else { throw TestFailure("top-up failed: \(started)") }
        _ = await server.standIn!.complete(session, outcome: .pay)
        try await deliverStandInEvents()
    }
}
