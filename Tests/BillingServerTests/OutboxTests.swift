import Billing
import BillingCore
import BillingStore
import BillingDevSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import JSONRPC
import NIOCore
import StripeAPI
import Testing

/// A stand-in for the SaaS product's endpoint: records what arrives; the first delivery of each event is refused.
actor ProductEndpoint {
    struct Received: Sendable {
        var body: [UInt8]
        var signature: String?
    }
    private(set) var received: [Received] = []
    private var refusedOnce: Set<String> = []

    func accept(_ body: [UInt8], signature: String?) -> Bool {
        let id = (try? JSONDecoder().decode(JSONValue.self, from: Data(body)))?["id"]?.stringValue ?? ""
        if refusedOnce.insert(id).inserted { return false }
        received.append(Received(body: body, signature: signature))
        return true
    }

    func events() -> [JSONValue] {
        received.compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.body)) }
    }
}

@Suite struct OutboxTests {
    static let secret = "events-secret-for-tests-0123456789"

    /// The event harness's configuration, with events to the product sent to `url`.
    static func sendingEvents(to url: String, pollMilliseconds: Int) -> [String: String] {
        EventHarness.extra.merging([
            "BILLING_EVENTS_URL": url, "BILLING_EVENTS_SECRET": secret, "BILLING_EVENTS_POLL_MS": String(pollMilliseconds),
        ]) { $1 }
    }

    @Test func changesReachTheProductSignedOnceEachAfterRetries() async throws {
        let endpoint = ProductEndpoint()
        let router = Router()
        router.post("/events") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let accepted = await endpoint.accept(Array(body.readableBytesView), signature: request.headers[.init("Billing-Signature")!])
            return Response(status: accepted ? .noContent : .internalServerError)
        }
        try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { product in
            let configured = Self.sendingEvents(to: "http://127.0.0.1:\(product.port!)/events", pollMilliseconds: 20).merging([
                "BILLING_EVENTS_RETRY_INITIAL_MS": "1", "BILLING_CREDITS_LOW_THRESHOLD": "50",
            ]) { $1 }
            try await TestServer.run(extra: configured) { client, server in
                let harness = EventHarness(client: client, server: server, extra: configured)
                let tenant = try await harness.tenant(customer: "cus_outbox")
                _ = try await client.rpc("credits.grant", [
                    "tenantId": .string(tenant.uuidString), "amount": 80, "reason": "welcome", "idempotencyKey": "g",
                ], token: try await server.token(.operator))
                _ = try await client.rpc("credits.consume", [
                    "tenantId": .string(tenant.uuidString), "amount": 40, "reason": "export", "idempotencyKey": "c",
                ], token: try await server.token(.service))
                try await harness.deliverInTurn([
                    EventHarness.event("evt_ob_1", "customer.subscription.created",
                                       EventHarness.subscription("sub_ob", customer: "cus_outbox"), created: harness.now - 20),
                    EventHarness.event("evt_ob_2", "customer.subscription.updated",
                                       EventHarness.subscription("sub_ob", customer: "cus_outbox", status: "unpaid"), created: harness.now - 10),
                    EventHarness.event("evt_ob_3", "invoice.payment_failed", EventHarness.object("invoice", [
                        "id": "in_ob", "customer": "cus_outbox", "status": "open", "amount_due": 4500, "currency": "usd",
                    ]), created: harness.now),
                ])
                // Free to active keeps the tenant entitled; unpaid ends it: one entitlement change.
                let expected = ["credits.changed", "credits.changed", "credits.low", "subscription.changed",
                                "subscription.changed", "entitlement.changed", "payment.failed"]
                #expect(try await DurabilityTests.eventually(seconds: 15) { await endpoint.events().count >= expected.count })
                try await Task.sleep(for: .milliseconds(200))
                let events = await endpoint.events()
                #expect(events.compactMap { $0["type"]?.stringValue }.sorted() == expected.sorted(), "\(events)")
                #expect(Set(events.compactMap { $0["id"]?.stringValue }).count == events.count)
                #expect(events.allSatisfy { $0["tenantId"] == .string(tenant.uuidString.lowercased()) })
                let low = events.first { $0["type"] == "credits.low" }
                #expect(low?["data"]?["available"] == 40)
                let entitlement = events.filter { $0["type"] == "entitlement.changed" }.map { $0["data"]?["entitled"] }
                #expect(entitlement.contains(.bool(false)))
                // Every delivery is signed as Stripe signs: the product verifies it with the shared secret.
                for delivery in await endpoint.received {
                    #expect(throws: Never.self) {
                        try WebhookSignature.verify(
                            header: delivery.signature, body: delivery.body, secrets: [Self.secret], now: Date(), tolerance: .seconds(300))
                    }
                }
                // ... and Stripe's own library verifies it unchanged.
                if let python = ProcessInfo.processInfo.environment["BILLING_TEST_PYTHON"], !python.isEmpty,
                   let delivery = await endpoint.received.first, let signature = delivery.signature
                {
                    let bodyFile = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID()).json")
                    defer { try? FileManager.default.removeItem(at: bodyFile) }
                    try Data(delivery.body).write(to: bodyFile)
                    let script = "import stripe,sys; stripe.WebhookSignature.verify_header(open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], 300)"
                    let verified = try await ProgramRun.run([python, "-c", script, bodyFile.path, signature, Self.secret])
                    #expect(verified.succeeded, "\(verified.errors)")
                } else {
                    Issue.record("BILLING_TEST_PYTHON is not set: run the tests with `make test`")
                }
                #expect(try await harness.count(
                    "SELECT count(*)::int FROM billing.outbox_events WHERE status = 'delivered' AND attempts = 2") == expected.count)
            }
        }
    }

    /// A deliverer holds no transaction while it sends; one that dies mid-send holds the event only until its lease
    /// runs out; an event parked after the last attempt waits for an operator's `billingd outbox retry`.
    @Test func aLeaseOutlivesADeadDelivererAndAnOperatorResendsParkedEvents() async throws {
        // Events are written; the server's own deliverer makes one pass at start (nothing yet) and then sleeps, so
        // the test delivers.
        let configured = Self.sendingEvents(to: "http://127.0.0.1:9/events", pollMilliseconds: 600_000)
        try await TestServer.run(extra: configured) { client, server in
            let harness = EventHarness(client: client, server: server, extra: configured)
            let tenant = try await harness.tenant(customer: "cus_lease")
            _ = try await client.rpc("credits.grant", [
                "tenantId": .string(tenant.uuidString), "amount": 10, "reason": "welcome", "idempotencyKey": "lease",
            ], token: try await server.token(.operator))
            #expect(try await harness.count("SELECT count(*)::int FROM billing.outbox_events WHERE status = 'pending'") == 1)
            let environment = server.commandEnvironment

            try await server.database.withAppClient { database in
                let outbox = Outbox(database: database)
                let twice = InboxRetryPolicy(initial: .milliseconds(1), maxAttempts: 2)
                // A deliverer that takes the event with a lease of `milliseconds`, then dies before finishing it.
                let dies = { @Sendable (milliseconds: Int) async throws -> UUID in
                    let claim = try await database.client.query(
                        "SELECT claim FROM billing.claim_outbox_event(\(milliseconds)::bigint, 2)", logger: database.logger)
                        .decode(UUID.self).first { _ in true }
                    return try #require(claim)
                }
                /// Tries a delivery every 100 ms until one is made (a lease ran out) or 30 s have passed.
                let nextDelivery = { @Sendable (send: @escaping @Sendable (OutboxMessage) async -> Outbox.Delivery) async throws in
                    let deadline = Date().addingTimeInterval(30)
                    var attempt: (OutboxMessage, Outbox.Delivery)?
                    while attempt == nil, Date() < deadline {
                        try await Task.sleep(for: .milliseconds(100))
                        attempt = try await outbox.deliverNext(retry: twice, lease: .seconds(30), send)
                    }
                    return attempt
                }
                let deadClaim = try await dies(8000)
                let idle = try await outbox.deliverNext(retry: twice, lease: .seconds(30)) { _ in .delivered }
                #expect(idle == nil, "a leased event was taken by a second deliverer")

                // Once the lease has run out it is due again; this second attempt fails too (the product is down), and
                // with the dead one it spends both: parked.
                let harnessForCheck = harness
                let attempt = try #require(try await nextDelivery { _ in
                    // While sending, no transaction of the deliverer stays open (a quick one of a background job may).
                    try? await Task.sleep(for: .milliseconds(2500))
                    let open = (try? await harnessForCheck.count("""
                        SELECT count(*)::int FROM pg_stat_activity
                        WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()
                          AND state_change < clock_timestamp() - interval '2 seconds'
                        """)) ?? -1
                    return open == 0 ? .failed("the endpoint answered 503") : .failed("a transaction was open while sending: \(open)")
                })
                #expect(attempt.1 == .failed("the endpoint answered 503"))
                #expect(attempt.0.attempts == 2)
                #expect(try await harness.count("SELECT count(*)::int FROM billing.outbox_events WHERE status = 'failed' AND attempts = 2") == 1)
                // The dead deliverer's late word no longer counts.
                let late = try await database.client.query("""
                    SELECT billing.finish_outbox_event(\(tenant), \(attempt.0.id), \(deadClaim), false, 'late', 0, false)
                    """, logger: database.logger).decode(Bool.self).first { _ in true }
                #expect(late == false)
                // Operators see the id the product sees.
                let eventID = "evt_" + attempt.0.id.uuidString.lowercased()

                let (listed, list, _) = try await Billingd.run(["outbox", "list", "--status", "failed"], environment: environment)
                #expect(listed == 0)
                #expect(list.contains("\(eventID)\tcredits.changed\t\(tenant.uuidString.lowercased())"))
                #expect(list.contains("the endpoint answered 503"))
                let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(try await server.token(.operator))"]).body)
                #expect(metrics.contains(#"billing_outbox_events{status="failed"} 1"#), "\(metrics)")

                let (retried, retry, retryErrors) = try await Billingd.run(["outbox", "retry", "--failed"], environment: environment)
                #expect(retried == 0, "\(retryErrors)")
                #expect(retry.contains("\(eventID)\twas failed"))
                #expect(retry.contains("1 event(s) due again"))
                // Resent, and again its deliverers die: two attempts that never finish park it at the next claim.
                _ = try await dies(200)
                try await Task.sleep(for: .milliseconds(300))
                _ = try await dies(200)
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await outbox.deliverNext(retry: twice, lease: .seconds(30)) { _ in .delivered } == nil)
                #expect(try await harness.count("""
                    SELECT count(*)::int FROM billing.outbox_events
                    WHERE status = 'failed' AND attempts = 2 AND last_error LIKE 'an attempt did not finish%'
                    """) == 1)

                // Resent once more, and delivered.
                #expect(try await Billingd.run(["outbox", "retry", eventID], environment: environment).0 == 0)
                let sent = try await outbox.deliverNext(retry: twice, lease: .seconds(30)) { _ in .delivered }
                #expect(sent.map { "evt_" + $0.0.id.uuidString.lowercased() } == eventID)
                #expect(try await harness.count("SELECT count(*)::int FROM billing.outbox_events WHERE status = 'delivered' AND attempts = 1") == 1)

                for (arguments, message) in [
                    (["outbox", "retry"], "name an event id, or give --failed"),
                    (["outbox", "retry", "not-an-id"], "not-an-id is not an outbox event id"),
                    (["outbox", "retry", UUID().uuidString], "the outbox has no event"),
                    (["outbox", "list", "--status", "lost"], "--status must be one of: pending, delivered, failed"),
                ] {
                    let (status, _, errors) = try await Billingd.run(arguments, environment: environment)
                    #expect(status != 0)
                    #expect(errors.contains(message), "\(arguments): \(errors)")
                }
            }
        }
    }

    /// The end of a past-due grace period changes no row, so a job announces it: once.
    @Test func theEndOfAGracePeriodIsAnnouncedOnce() async throws {
        let extra = EventHarness.extra.merging([
            "BILLING_EVENTS_URL": "http://127.0.0.1:9/events", "BILLING_EVENTS_SECRET": Self.secret, "BILLING_GRACE_PERIOD_SECONDS": "3600",
        ]) { $1 }
        try await TestServer.run(extra: extra) { client, server in
            let harness = EventHarness(client: client, server: server, extra: extra)
            let tenant = try await harness.tenant(customer: "cus_grace_job")
            try await harness.deliver(EventHarness.event(
                "evt_grace_job", "customer.subscription.updated",
                EventHarness.subscription("sub_grace_job", customer: "cus_grace_job", status: "past_due"), created: harness.now - 1800))
            try await harness.drain()
            let configuration = try TestServer.configuration(server.database, extra: extra)
            let job = {
                try await server.database.withAppClient { database in
                    var environment = try configuration.environment(database: database, logger: .init(label: "job"))
                    environment.settings.pastDueGrace = .seconds(3600)
                    return try await GracePeriodJob(environment: environment).run(now: Date().addingTimeInterval(3600), logger: .init(label: "job"))
                }
            }
            // Past due for 30 minutes of a one-hour grace: entitled, nothing said yet; an hour on, said once.
            #expect(try await harness.count("SELECT count(*)::int FROM billing.outbox_events WHERE type = 'entitlement.changed'") == 0)
            #expect(try await job() == [tenant])
            #expect(try await job().isEmpty)
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.outbox_events WHERE tenant_id = '\(tenant)' AND type = 'entitlement.changed' AND payload LIKE '%\"entitled\":false%'") == 1)
        }
    }
}
