import AsyncHTTPClient
import Foundation
import HummingbirdTesting
import JSONRPC
import NIOCore
import StripeStandIn
import Testing

/// Methods that call Stripe do it in atomic phases: the intent is recorded in a short transaction, Stripe is called with
/// no transaction or row lock held, and the outcome is recorded in a second one. A slow Stripe holds no connection, a
/// repeat re-sends the intent's key, and an intent left behind by a dead process is settled by reading Stripe.
@Suite struct AtomicPhasesTests {
    /// Stripe answers in 15 s (long enough for a loaded machine to do everything else meanwhile); the Stripe client
    /// waits for it.
    static let slow = ["BILLING_STRIPE_TIMEOUT_MS": "40000", "BILLING_STRIPE_MAX_ATTEMPTS": "1", "BILLING_DB_POOL_SIZE": "2"]

    /// Before: each top-up held a pooled connection and its tenant's row lock for the whole Stripe call, so two slow
    /// calls took the whole pool (of 2 here) and every other read waited for Stripe.
    @Test func slowStripeCallsHoldNoConnectionAndNoLock() async throws {
        try await TestServer.run(extra: Self.slow, stripe: true) { client, server in
            var tenants: [UUID] = []
            for index in 0..<3 { tenants.append(try await server.provision(client, name: "Slow \(index)")) }
            let standIn = try #require(server.standIn)
            await standIn.inject(StandInFault(kind: .delay, path: "/v1/checkout/sessions", count: 3, delayMilliseconds: 15000))
            let finished = Finished()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for tenant in tenants {
                    let admin = try await server.token(.admin, tenant: tenant)
                    group.addTask {
                        let started = try await Self.rpc(port: client.port!, "billing.topUp", ["credits": 600], token: admin)
                        #expect(started["result"]?["sessionId"] != nil, "\(started)")
                        await finished.add()
                    }
                }
                // Every top-up is at Stripe now, waiting.
                #expect(try await DurabilityTests.eventually(seconds: 10) { try await server.intents(status: "started") == 3 })
                let member = try await server.token(.member, tenant: tenants[0])
                let status = try await client.rpc("billing.status", token: member)
                #expect(status["result"]?["tenantId"] != nil, "\(status)")
                // The same tenant's row is free: a credit grant (which locks it) goes through too.
                let granted = try await client.rpc(
                    "credits.grant", ["tenantId": .string(tenants[0].uuidString), "amount": 5, "reason": "while Stripe is slow", "idempotencyKey": "slow-1"],
                    token: try await server.token(.operator))
                #expect(granted["result"] != nil, "\(granted)")
                #expect(await finished.count == 0, "status and the grant waited for Stripe")
                try await group.waitForAll()
            }
            #expect(await finished.count == 3)
            #expect(try await server.intents(status: "succeeded") == 3)
        }
    }

    /// A second click while the first one's Stripe call is still running re-sends the same key: Stripe says it is in
    /// flight, and the caller is told to try again in a moment; only one session is made.
    @Test func aDoubleClickWhileStripeIsSlowIsToldToWaitAndMakesNothingNew() async throws {
        try await TestServer.run(extra: Self.slow, stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let standIn = try #require(server.standIn)
            await standIn.inject(StandInFault(kind: .delay, path: "/v1/checkout/sessions", count: 1, delayMilliseconds: 15000))
            // Its own connection: the test client's one connection would send the next call only after this one.
            async let first = Self.rpc(port: client.port!, "billing.checkout", ["plan": "pro"], token: admin)
            #expect(try await DurabilityTests.eventually(seconds: 10) { try await server.intents(status: "started") == 1 })
            let second = try await client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            #expect(second.errorName == "CONFLICT", "\(second)")
            #expect(second["error"]?["data"]?["retryAfter"] != nil, "\(second)")
            // Another choice meanwhile waits as well: one plan checkout at a time.
            let other = try await client.rpc("billing.checkout", ["plan": "team"], token: admin)
            #expect(other.errorName == "CONFLICT", "\(other)")
            let session = try #require(try await first["result"]?["sessionId"]?.stringValue)
            #expect(await standIn.count(of: "checkout.session") == 1)
            // Once recorded, the same click gets the same session back.
            let again = try await client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            #expect(again["result"]?["sessionId"]?.stringValue == session)
        }
    }

    /// A seat change whose process died after Stripe was asked (its intent still `started`, older than any call may
    /// take) is settled by reading the subscription from Stripe before the next change is made.
    @Test func anIntentLeftByADeadProcessIsSettledByReadingStripe() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let subscription = try await harness.subscriptionID(tenant)
            // The dead process had asked Stripe for 5 seats; its answer never got recorded.
            _ = try await #require(server.stripe).updateSubscription(subscription, [
                "items": [["id": .string(try await server.stripe!.retrieveSubscription(subscription).items.data[0].id), "quantity": 5]],
                "proration_behavior": "none",
            ], idempotencyKey: "dead-process")
            try await harness.owner { try await $0.run("""
                INSERT INTO billing.stripe_intents (tenant_id, id, subject, operation, request, exclusive, plan, created_at)
                VALUES ('\(tenant)', gen_random_uuid(), 'subscription', 'billing.updateSeats', 'seats=5', true,
                        '{"subscription": "\(subscription)", "seen": "", "steps": []}', now() - interval '10 minutes')
                """) }
            let admin = try await server.token(.admin, tenant: tenant)
            let changed = try await client.rpc("billing.updateSeats", ["seats": 4], token: admin)
            #expect(changed["result"]?["seats"] == 4, "\(changed)")
            #expect(try await server.intents(status: "abandoned") == 1)
            #expect(try await harness.count("SELECT count(*)::int FROM billing.audit_events WHERE action = 'subscription.settled'") == 1)
            #expect(try await server.stripe!.retrieveSubscription(subscription).items.data[0].quantity == 4)
        }
    }

    /// Stripe keeps an idempotency key for 24 hours: a top-up intent left open for longer is never re-sent under its key
    /// (Stripe may have forgotten it and would make a second session); it is settled, and the repeat starts a new one.
    @Test func anIntentOlderThanStripeKeepsKeysIsSettledNotResent() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let customer: String = try #require(try await server.database.withOwnerClient { connection in
                try await connection.first(
                    "SELECT stripe_customer_id FROM billing.tenants WHERE id = \(tenant)", as: String.self, logger: .init(label: "test"))
            })
            try await server.database.withOwnerClient { connection in
                try await connection.query("""
                    INSERT INTO billing.stripe_intents (tenant_id, id, subject, operation, request, exclusive, plan, created_at)
                    VALUES (\(tenant), gen_random_uuid(), 'top_up', 'billing.topUp', 'credits=600 key=old', false,
                            jsonb_build_object('customer', \(customer)::text, 'credits', 600, 'amount', 600, 'topUpID', gen_random_uuid()::text),
                            now() - interval '24 hours')
                    """, logger: .init(label: "test"))
            }
            let started = try await client.rpc("billing.topUp", ["credits": 600, "idempotencyKey": "old"], token: admin)
            #expect(started["result"]?["sessionId"] != nil, "\(started)")
            #expect(try await server.intents(status: "abandoned") == 1)
            #expect(try await server.intents(status: "succeeded") == 1)
            #expect(await server.standIn!.count(of: "checkout.session") == 1)
        }
    }

    /// Stripe refusing the request ends its intent: the next request is not held up by it.
    @Test func aRefusedRequestEndsItsIntent() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            await server.standIn!.inject(StandInFault(kind: .invalidParam, path: "/v1/checkout/sessions"))
            let refused = try await client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            #expect(refused["error"] != nil)
            #expect(try await server.intents(status: "failed") == 1)
            let other = try await client.rpc("billing.checkout", ["plan": "team"], token: admin)
            #expect(other["result"]?["sessionId"] != nil, "\(other)")
        }
    }
}

extension AtomicPhasesTests {
    /// One JSON-RPC call on a connection of its own, so that calls can be in flight together.
    static func rpc(port: Int, _ method: String, _ params: [String: JSONValue], token: String) async throws -> JSONValue {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/rpc")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let call: JSONValue = ["jsonrpc": "2.0", "id": 1, "method": .string(method), "params": .object(params)]
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(call)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return try JSONDecoder().decode(JSONValue.self, from: Data(buffer: try await response.body.collect(upTo: 1 << 20)))
    }
}

actor Finished {
    private(set) var count = 0
    func add() { count += 1 }
}

extension TestServer {
    /// How many of the server's recorded Stripe intents have `status`.
    func intents(status: String) async throws -> Int {
        try await database.withOwnerClient { connection in
            try await connection.first(
                "SELECT count(*)::int FROM billing.stripe_intents WHERE status = \(status)", as: Int.self, logger: .init(label: "test")) ?? 0
        }
    }
}
