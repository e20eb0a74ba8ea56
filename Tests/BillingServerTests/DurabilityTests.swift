import AsyncHTTPClient
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
import Testing

/// Nothing Stripe sends is lost or applied twice: several workers, crashes, a database outage, and reconciliation.
@Suite struct DurabilityTests {
    /// Polls `condition` every 50 ms for up to `seconds`.
    static func eventually(seconds: Double = 30, _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? await condition()) == true { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    @Test func twoWorkersOnOneInboxApplyEveryEventOnce() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            for n in 0..<24 {
                let topUp = try await harness.seedTopUp(tenant, credits: 500 + n)
                try await harness.deliver(EventHarness.event(
                    "evt_pair_\(n)", "payment_intent.succeeded",
                    EventHarness.topUpIntent("pi_pair_\(n)", tenant: tenant, topUp: topUp, amount: 500 + n, charge: "ch_pair_\(n)"),
                    created: harness.now))
            }
            async let first = harness.drain()
            async let second = harness.drain()
            let (a, b) = try await (first, second)
            let ids = { (outcomes: [ProcessOutcome]) in outcomes.map(\.event.id) }
            #expect(Set(ids(a)).isDisjoint(with: ids(b)))
            #expect(a.count + b.count == 24)
            let expected = (0..<24).reduce(0) { $0 + 500 + $1 }
            #expect(try await harness.balance(tenant) == (expected, 0))
            #expect(try await harness.count("SELECT count(*)::int FROM billing.stripe_events WHERE status = 'processed' AND attempts = 1") == 24)
        }
    }

    /// A payment's two events (`payment_intent.succeeded`, `charge.succeeded`) arrive together and two workers take
    /// one each: the second waits for the first's row instead of inserting it again and failing.
    @Test func twoEventsAboutOneNewPaymentRecordItOnceWithoutARetry() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let metadata = ["tenant_id": tenant.uuidString.lowercased()]
            // Claimed in id order: each payment's two events are next to each other.
            for n in 0..<12 {
                var intent = EventHarness.topUpIntent("pi_twin_\(n)", tenant: tenant, topUp: UUID(), amount: 700, charge: "ch_twin_\(n)")
                intent["metadata"] = metadata
                var charge = EventHarness.charge("ch_twin_\(n)", intent: "pi_twin_\(n)", amount: 700)
                charge["metadata"] = metadata
                try await harness.deliver(EventHarness.event("evt_twin_\(n + 10)_a", "payment_intent.succeeded", intent, created: harness.now))
                try await harness.deliver(EventHarness.event("evt_twin_\(n + 10)_b", "charge.succeeded", charge, created: harness.now))
            }
            async let first = harness.drain()
            async let second = harness.drain()
            _ = try await (first, second)
            #expect(try await harness.count("SELECT count(*)::int FROM billing.payments WHERE payment_id LIKE 'pi_twin_%' AND charge_id IS NOT NULL") == 12)
            let retried = try await harness.count("SELECT count(*)::int FROM billing.stripe_events WHERE event_id LIKE 'evt_twin_%' AND (status <> 'processed' OR attempts > 1)")
            #expect(retried == 0, "an event failed on the payment another was inserting")
        }
    }

    /// A worker that dies mid-transaction (its connection drops before COMMIT) leaves the event due and its effects
    /// undone; while it held the event, no other worker could take it.
    @Test func aCrashMidTransactionLeavesTheEventDueAndItAppliesOnce() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let topUp = try await harness.seedTopUp(tenant, credits: 800)
            try await harness.deliver(EventHarness.event(
                "evt_crash", "payment_intent.succeeded",
                EventHarness.topUpIntent("pi_crash", tenant: tenant, topUp: topUp, amount: 800, charge: "ch_crash"), created: harness.now))
            struct Crash: Error { let backend: Int32 }
            let logger = Logger(label: "test.crash")
            var crashed: Int32?
            do {
                try await server.database.appURL.withConnection(logger: logger) { connection in
                    let backend = try await connection.first("SELECT pg_backend_pid()", as: Int32.self, logger: logger)!
                    try await connection.query("BEGIN", logger: logger)
                    let claimed = try await connection.first("SELECT event_id FROM billing.claim_stripe_event(NULL)", as: String.self, logger: logger)
                    #expect(claimed == "evt_crash")
                    try await connection.query("SELECT set_config('app.tenant_id', \(tenant.uuidString.lowercased()), true)", logger: logger)
                    _ = try await connection.first(
                        "SELECT billing.append_credit_entry(\(tenant), \("topup:\(topUp.uuidString.lowercased())"), 'topup', 800, 0, 'half done', 'evt_crash')",
                        as: Int?.self, logger: logger)
                    // Another worker meanwhile finds nothing it may take.
                    #expect(try await harness.drain().isEmpty)
                    throw Crash(backend: backend)
                }
            } catch let crash as Crash {
                crashed = crash.backend
            }
            // PostgreSQL rolls the transaction back and frees the row once it sees the socket closed, which happens
            // a moment after the client has gone; until then the event stays held.
            let backend = try #require(crashed)
            #expect(try await Self.eventually {
                try await harness.count("SELECT count(*)::int FROM pg_stat_activity WHERE pid = \(backend)") == 0
            })
            #expect(try await harness.balance(tenant) == (0, 0))
            #expect(try await harness.eventStatus("evt_crash") == "pending")
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (800, 0))
            #expect(try await harness.eventStatus("evt_crash") == "processed")
        }
    }

    /// The server's own worker is woken by NOTIFY: with polling set to ten minutes, the event is still applied at once.
    @Test func theServersWorkerIsWokenByNotifyAndReportsTheInboxAsMetrics() async throws {
        var extra = EventHarness.extra
        extra["BILLING_INBOX_WORKERS"] = "2"
        extra["BILLING_INBOX_POLL_MS"] = "600000"
        try await TestServer.run(extra: extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let topUp = try await harness.seedTopUp(tenant, credits: 900)
            // Let the worker reach its wait first, so only a notification can wake it.
            try await Task.sleep(for: .milliseconds(300))
            try await harness.deliver(EventHarness.event(
                "evt_notify", "payment_intent.succeeded",
                EventHarness.topUpIntent("pi_notify", tenant: tenant, topUp: topUp, amount: 900, charge: "ch_notify"), created: harness.now))
            #expect(try await Self.eventually { try await harness.balance(tenant) == (900, 0) })
            // A parked event shows in the metrics.
            try await harness.deliver(EventHarness.event(
                "evt_parked", "customer.subscription.created",
                EventHarness.subscription("sub_parked", customer: "cus_x", price: "price_unknown",
                                          metadata: ["tenant_id": tenant.uuidString.lowercased()]), created: harness.now))
            #expect(try await Self.eventually { try await harness.eventStatus("evt_parked") == "failed" })
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(try await server.token(.operator))"]).body)
            #expect(metrics.contains(#"billing_inbox_events{status="failed"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"billing_inbox_events{status="processed"} 1"#))
            #expect(metrics.contains("billing_inbox_oldest_waiting_seconds 0"))
            #expect(metrics.contains(#"billing_inbox_processed_total{outcome="processed"} 1"#))
        }
    }

    /// An event of the other mode is kept as ignored, and an operator's replay applies nothing either.
    @Test func anOtherModeEventStaysIgnoredWhenReplayed() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let topUp = try await harness.seedTopUp(tenant, credits: 400)
            try await harness.deliver(EventHarness.event(
                "evt_live_mode", "payment_intent.succeeded",
                EventHarness.topUpIntent("pi_live", tenant: tenant, topUp: topUp, amount: 400, charge: "ch_live"),
                created: harness.now, livemode: true))
            #expect(try await harness.eventStatus("evt_live_mode") == "ignored")
            try await server.database.withAppClient { database in
                _ = try await EventInbox(database: database).retry("evt_live_mode")
            }
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_live_mode") == "ignored")
            #expect(try await harness.balance(tenant) == (0, 0))
        }
    }

    /// `billingd serve` killed with SIGKILL after storing an event and before processing it; `billingd worker`
    /// started afterwards applies it, once.
    @Test func anEventStoredBeforeAKillIsAppliedAfterRestartOnce() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        let port = try freeLocalPort()
        let environment = [
            "DATABASE_URL": database.appURL.secretURLString, "BILLING_HTTP_PORT": String(port),
            "BILLING_JWT_SECRET": TestServer.secrets[0], "STRIPE_WEBHOOK_SECRETS": EventHarness.secret,
            "BILLING_INBOX_WORKERS": "0", "BILLING_INBOX_POLL_MS": "100",
        ]
        let serve = try Billingd.start(["serve"], environment: environment)
        var killed = false
        defer { if !killed { serve.child.signal(SIGKILL); _ = serve.child.wait() } }
        // The tenant and its pending top-up, as the server's role would have recorded them.
        let tenant = UUID()
        let topUp = UUID()
        try await database.withOwnerClient { connection in
            let logger = Logger(label: "test")
            try await connection.query("INSERT INTO billing.tenants (id, name, email) VALUES (\(tenant), 'Kill', 'k@acme.example')", logger: logger)
            try await connection.query("""
                INSERT INTO billing.checkout_sessions (tenant_id, session_id, purpose, url, expires_at)
                VALUES (\(tenant), 'cs_kill', 'credit_topup', 'https://checkout.example', now() + interval '1 day')
                """, logger: logger)
            try await connection.query("""
                INSERT INTO billing.top_ups (tenant_id, top_up_id, credits, amount, currency, session_id)
                VALUES (\(tenant), \(topUp), 650, 650, 'usd', 'cs_kill')
                """, logger: logger)
        }
        let body = EventHarness.event(
            "evt_kill", "payment_intent.succeeded",
            EventHarness.topUpIntent("pi_kill", tenant: tenant, topUp: topUp, amount: 650, charge: "ch_kill"),
            created: Int(Date().timeIntervalSince1970))
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/webhooks/stripe")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Stripe-Signature", value: WebhookSignature.header(
            body: body, secrets: [EventHarness.secret], timestamp: Int(Date().timeIntervalSince1970)))
        request.body = .bytes(ByteBuffer(bytes: body))
        var delivered = false
        for _ in 0..<100 where !delivered {
            if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) {
                delivered = response.status == .ok
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(delivered, "\(serve.errors())")
        serve.child.signal(SIGKILL)
        _ = serve.child.wait()
        killed = true

        let status = { @Sendable () async throws -> String? in
            try await database.withOwnerClient { connection in
                try await connection.first("SELECT status FROM billing.stripe_events WHERE event_id = 'evt_kill'", as: String.self, logger: Logger(label: "t"))
            }
        }
        #expect(try await status() == "pending")
        let worker = try Billingd.start(["worker"], environment: environment)
        var stopped: Int32?
        defer { if stopped == nil { worker.child.signal(SIGKILL); _ = worker.child.wait() } }
        #expect(try await Self.eventually { try await status() == "processed" }, "\(worker.errors())")
        worker.child.signal(SIGTERM)
        stopped = worker.child.wait()
        #expect(stopped == 0, "\(worker.errors())")
        let credited = try await database.withOwnerClient { connection in
            try await connection.first(
                "SELECT available::int FROM billing.credit_balances WHERE tenant_id = \(tenant)", as: Int.self, logger: Logger(label: "t"))
        }
        #expect(credited == 650)
    }

    /// With PostgreSQL down the endpoint answers 503 (Stripe retries); once it is back, the retry is stored and applied.
    @Test func whileTheDatabaseIsDownStripeGets503AndTheRetryLands() async throws {
        let (cluster, database) = try await TestCluster.standalone()
        defer {
            cluster.stop()
            try? FileManager.default.removeItem(at: cluster.directory)
        }
        var extra = EventHarness.extra
        extra["BILLING_INBOX_WORKERS"] = "1"
        extra["BILLING_INBOX_POLL_MS"] = "100"
        extra["BILLING_WEBHOOK_STORE_TIMEOUT_MS"] = "1000"
        // A transaction stuck on a connection that closed under it is given up on quickly here.
        extra["BILLING_INBOX_EVENT_TIMEOUT_MS"] = "3000"
        try await TestServer.run(extra: extra, database: database) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let topUp = try await harness.seedTopUp(tenant, credits: 555)
            let body = EventHarness.event(
                "evt_outage", "payment_intent.succeeded",
                EventHarness.topUpIntent("pi_outage", tenant: tenant, topUp: topUp, amount: 555, charge: "ch_outage"), created: harness.now)
            cluster.stop()
            await #expect(throws: TestFailure.self) { try await harness.deliver(body) }
            var headers: HTTPFields = [.contentType: "application/json"]
            headers[.init("Stripe-Signature")!] = WebhookSignature.header(
                body: body, secrets: [EventHarness.secret], timestamp: harness.now)
            let refused = try await client.execute(uri: "/webhooks/stripe", method: .post, headers: headers, body: ByteBuffer(bytes: body))
            #expect(refused.status == .serviceUnavailable)
            try cluster.start(durable: false)
            // Stripe retries until the answer is 2xx.
            #expect(try await Self.eventually { (try? await harness.deliver(body)) != nil })
            #expect(try await Self.eventually { try await harness.balance(tenant) == (555, 0) })
        }
    }

    /// localstripe (a Stripe written by others) signs and sends its own webhooks: a charge made there is recorded here.
    @Test func localstripesOwnSignedWebhooksAreAppliedEndToEnd() async throws {
        guard let url = ProcessInfo.processInfo.environment["BILLING_TEST_LOCALSTRIPE_URL"], !url.isEmpty else {
            Issue.record("BILLING_TEST_LOCALSTRIPE_URL is not set: run the tests with `make test`, which starts localstripe")
            return
        }
        let secret = "whsec_localstripe_\(UUID().uuidString.prefix(8))"
        var extra = EventHarness.extra
        extra["STRIPE_WEBHOOK_SECRETS"] = secret
        extra["BILLING_INBOX_WORKERS"] = "1"
        extra["BILLING_INBOX_POLL_MS"] = "200"
        try await TestServer.run(extra: extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let localstripe = StripeClient(configuration: StripeConfiguration(apiBase: url, secretKey: "sk_test_localstripe_events"))
            // Registered under an id of this test's own, pointing at this server.
            _ = try await localstripe.sendRaw(.post, "/_config/webhooks/billing-\(UUID().uuidString.prefix(8))", [
                "url": .string("http://127.0.0.1:\(client.port!)/webhooks/stripe"), "secret": .string(secret),
            ])
            let customer = try await localstripe.createCustomer(
                email: "ls@acme.example", name: "LS", tenantID: tenant.uuidString.lowercased(), idempotencyKey: UUID().uuidString)
            let intent = try await localstripe.createPaymentIntent([
                "amount": 1234, "currency": "usd", "customer": .string(customer.id), "payment_method": "pm_card_visa",
                "confirm": true, "metadata": ["tenant_id": .string(tenant.uuidString.lowercased())],
            ], idempotencyKey: UUID().uuidString)
            #expect(try await Self.eventually(seconds: 20) {
                try await harness.count("SELECT count(*)::int FROM billing.payments WHERE payment_intent_id = '\(intent.id)' AND amount = 1234") == 1
            })
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.stripe_events WHERE type = 'customer.created' AND status = 'ignored'") >= 1)
        }
    }

    /// Events Stripe has but the inbox missed (a webhook outage) are listed, stored and applied; a subscription
    /// that drifted is read again from Stripe.
    @Test func reconciliationHealsAnOutageAndRereadsQuietSubscriptions() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            // Paid at Stripe, but no webhook reached us.
            let topUp = try await client.rpc("billing.topUp", ["credits": 2000], token: admin)
            _ = await server.standIn!.complete(try #require(topUp["result"]?["sessionId"]?.stringValue), outcome: .pay)
            let checkout = try await client.rpc("billing.checkout", ["plan": "team", "seats": 4], token: admin)
            _ = await server.standIn!.complete(try #require(checkout["result"]?["sessionId"]?.stringValue), outcome: .pay)

            let reconcile = { @Sendable (maxAge: Duration) async throws -> Reconciler.Report in
                try await server.database.withAppClient { database in
                    try await Reconciler(
                        environment: try TestServer.configuration(server.database).environment(
                            database: database, logger: Logger(label: "test.reconcile"), stripe: server.stripe!),
                        stripe: server.stripe!, lookback: .seconds(3600), subscriptionMaxAge: maxAge
                    ).run()
                }
            }
            let report = try await reconcile(.seconds(86400))
            // The top-up's session, charge and PaymentIntent; the trial's subscription, session and 0.00 invoice.
            #expect(report.stored == report.listed && report.stored >= 6, "\(report)")
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (2000, 0))
            #expect(try await harness.subscriptionState(tenant)?.hasPrefix("team month 4 trialing") == true)
            // A second pass finds nothing new.
            #expect(try await reconcile(.seconds(86400)).stored == 0)

            // Our row drifted (say a lost event) and has been quiet: it is read again from Stripe.
            try await harness.owner {
                try await $0.run("UPDATE billing.subscriptions SET seats = 9, updated_at = now() - interval '2 days' WHERE tenant_id = '\(tenant)'")
            }
            let second = try await reconcile(.seconds(3600))
            #expect(second.refreshed == 1)
            try await harness.drain()
            #expect(try await harness.subscriptionState(tenant)?.hasPrefix("team month 4 trialing") == true)
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.stripe_events WHERE event_id LIKE 'reconcile_sub_%' AND status = 'processed'") == 1)

            // `billingd reconcile` does the same pass from the command line.
            let (status, output, errors) = try await Billingd.run(["reconcile"], environment: server.commandEnvironment)
            #expect(status == 0, "\(errors)")
            #expect(output.contains("stored 0 missing"), "\(output)")
        }
    }
}

/// `billingd events` and `billingd worker --once`, as an operator runs them.
@Suite struct EventCommandTests {
    @Test func operatorsListShowAndReplayEvents() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_cli")
            let object = EventHarness.subscription("sub_cli", customer: "cus_cli", price: "price_not_ours")
            try await harness.deliver(EventHarness.event("evt_cli_bad", "customer.subscription.created", object, created: harness.now - 5))
            try await harness.deliver(EventHarness.event(
                "evt_cli_other", "customer.discount.created", EventHarness.object("customer", ["id": "cus_cli"]), created: harness.now))
            let environment = server.commandEnvironment

            // Nothing runs the worker but this command.
            let (ran, once, onceErrors) = try await Billingd.run(["worker", "--once"], environment: environment)
            #expect(ran == 0, "\(onceErrors)")
            #expect(once.contains("evt_cli_bad\tcustomer.subscription.created\trejected"))
            #expect(once.contains("evt_cli_other\tcustomer.discount.created\tignored"))
            #expect(once.contains("2 event(s) processed"))

            let (listed, list, _) = try await Billingd.run(["events", "list", "--status", "failed"], environment: environment)
            #expect(listed == 0)
            #expect(list.contains("evt_cli_bad\tcustomer.subscription.created"))
            #expect(list.contains("price_not_ours, which is not in the plan catalog"))
            #expect(!list.contains("evt_cli_other"))

            let (shown, show, _) = try await Billingd.run(["events", "show", "evt_cli_bad"], environment: environment)
            #expect(shown == 0)
            let document = try JSONDecoder().decode(JSONValue.self, from: Data(show.utf8))
            #expect(document["status"] == "failed")
            #expect(document["tenantId"] == .string(tenant.uuidString.lowercased()))
            #expect(document["payload"]?["data"]?["object"]?["id"] == "sub_cli")

            let (refused, _, refusal) = try await Billingd.run(["events", "list", "--status", "lost"], environment: environment)
            #expect(refused != 0)
            #expect(refusal.contains("--status must be one of"))
            let (missing, _, missingError) = try await Billingd.run(["events", "show", "evt_nowhere"], environment: environment)
            #expect(missing != 0)
            #expect(missingError.contains("the inbox has no event evt_nowhere"))
        }
    }
}
