import Billing
import BillingCore
import BillingServer
import BillingStore
import BillingDevSupport
import Foundation
import HummingbirdTesting
import JSONRPC
import Logging
import StripeAPI
import StripeStandIn
import Testing

/// A seeded shuffle, so a failing order can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension EventHarness {
    /// A pending top-up as `billing.topUp` records it (its Checkout Session included).
    func seedTopUp(_ tenant: UUID, credits: Int, amount: Int? = nil) async throws -> UUID {
        let id = UUID()
        let session = "cs_seed_\(id.uuidString.prefix(8))"
        try await owner {
            try await $0.run("""
                INSERT INTO billing.checkout_sessions (tenant_id, session_id, purpose, url, expires_at)
                VALUES ('\(tenant)', '\(session)', 'credit_topup', 'https://checkout.example/\(session)', now() + interval '1 day')
                """)
            try await $0.run("""
                INSERT INTO billing.top_ups (tenant_id, top_up_id, credits, amount, currency, session_id)
                VALUES ('\(tenant)', '\(id)', \(credits), \(amount ?? credits), 'usd', '\(session)')
                """)
        }
        return id
    }

    static func topUpIntent(_ id: String, tenant: UUID, topUp: UUID, amount: Int, charge: String) -> [String: Any] {
        object("payment_intent", [
            "id": id, "status": "succeeded", "amount": amount, "amount_received": amount, "currency": "usd",
            "latest_charge": charge, "last_payment_error": NSNull(),
            "metadata": ["tenant_id": tenant.uuidString.lowercased(), "purpose": "credit_topup", "top_up_id": topUp.uuidString.lowercased()],
        ])
    }

    static func charge(_ id: String, intent: String, amount: Int, refunded: Int = 0) -> [String: Any] {
        object("charge", [
            "id": id, "payment_intent": intent, "amount": amount, "amount_captured": amount, "amount_refunded": refunded,
            "refunded": refunded == amount, "currency": "usd", "paid": true, "status": "succeeded", "metadata": [:] as [String: Any],
        ])
    }

    /// A top-up of `credits` paid and processed: (top-up, PaymentIntent id, charge id).
    func paidTopUp(_ tenant: UUID, credits: Int, tag: String) async throws -> (UUID, String, String) {
        let topUp = try await seedTopUp(tenant, credits: credits)
        let (intent, charge) = ("pi_\(tag)", "ch_\(tag)")
        try await deliver(Self.event("evt_pi_\(tag)", "payment_intent.succeeded",
                                     Self.topUpIntent(intent, tenant: tenant, topUp: topUp, amount: credits, charge: charge), created: now))
        try await drain()
        return (topUp, intent, charge)
    }

    var now: Int { Int(Date().timeIntervalSince1970) }
}

@Suite struct TopUpFulfilmentTests {
    @Test func aTopUpIsCreditedOnceWhicheverEventComesFirstAndHoweverOften() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let started = try await client.rpc("billing.topUp", ["credits": 1500], token: admin)
            let sessionID = try #require(started["result"]?["sessionId"]?.stringValue)
            _ = await server.standIn!.complete(sessionID, outcome: .pay)

            // Stripe's own events for that payment (as the stand-in recorded them), payment first, each three times.
            let listed = try await server.stripe!.listEvents().events
            let wanted = ["payment_intent.succeeded", "charge.succeeded", "checkout.session.completed"]
            let events = wanted.compactMap { type in listed.first { $0.type == type } }
            #expect(events.count == 3)
            for event in events {
                for _ in 0..<3 { try await harness.deliver(Array(event.raw)) }
            }
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (1500, 0))
            #expect(try await harness.count("SELECT count(*)::int FROM billing.credit_ledger WHERE kind = 'topup'") == 1)
            #expect(try await harness.count("SELECT count(*)::int FROM billing.top_ups WHERE status = 'paid'") == 1)
            // One payment, with its charge, whichever event recorded it first.
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.payments WHERE purpose = 'credit_topup' AND charge_id IS NOT NULL AND amount = 1500") == 1)
            for event in events { #expect(try await harness.eventStatus(event.id) == "processed") }

            // An operator's replay changes nothing either.
            try await server.database.withAppClient { database in
                for event in events { _ = try await EventInbox(database: database).retry(event.id) }
            }
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (1500, 0))
            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["creditBalance"] == 1500)
            // Each change is in the audit trail, naming the Stripe event.
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.audit_events WHERE action = 'credits.topped_up' AND actor_type = 'stripe' AND actor LIKE 'evt_%'") == 1)
        }
    }

    @Test func anAmountThatDoesNotMatchIsFlaggedAndNotCredited() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let topUp = try await harness.seedTopUp(tenant, credits: 1000)
            let wrong = EventHarness.topUpIntent("pi_short", tenant: tenant, topUp: topUp, amount: 999, charge: "ch_short")
            try await harness.deliver(EventHarness.event("evt_short", "payment_intent.succeeded", wrong, created: harness.now))
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (0, 0))
            #expect(try await harness.eventStatus("evt_short") == "processed")
            let flag: String? = try await harness.owner { try await $0.first("SELECT flag FROM billing.top_ups WHERE top_up_id = '\(topUp)'") }
            #expect(flag?.contains("Stripe took USD 9.99 for a top-up of USD 10.00") == true)
            // A later event with the right amount does not credit a flagged top-up: an operator settles it.
            let right = EventHarness.topUpIntent("pi_short", tenant: tenant, topUp: topUp, amount: 1000, charge: "ch_short")
            try await harness.deliver(EventHarness.event("evt_right", "payment_intent.succeeded", right, created: harness.now))
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (0, 0))
            #expect(try await harness.count("SELECT count(*)::int FROM billing.audit_events WHERE action = 'topup.flagged'") == 1)
        }
    }

    /// A client retrying a top-up whose payment was flagged gets a clear CONFLICT, not a second session (and not the
    /// INTERNAL_SERVER_ERROR the key's unique index used to give after a Stripe session was already made).
    @Test func reusingAFlaggedTopUpsKeyIsAConflict() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let first = try await client.rpc("billing.topUp", ["credits": 1000, "idempotencyKey": "flag-me"], token: admin)
            #expect(first["result"]?["sessionId"]?.stringValue != nil, "\(first)")
            let topUp: UUID = try #require(try await harness.owner {
                try await $0.first("SELECT top_up_id FROM billing.top_ups WHERE tenant_id = '\(tenant)'")
            })
            let wrong = EventHarness.topUpIntent("pi_flag", tenant: tenant, topUp: topUp, amount: 999, charge: "ch_flag")
            try await harness.deliver(EventHarness.event("evt_flag", "payment_intent.succeeded", wrong, created: harness.now))
            try await harness.drain()
            let sessions = await server.standIn!.count(of: "checkout.session")
            let again = try await client.rpc("billing.topUp", ["credits": 1000, "idempotencyKey": "flag-me"], token: admin)
            #expect(again.errorName == "CONFLICT", "\(again)")
            #expect(again.errorMessage.contains("held for an operator"))
            #expect(await server.standIn!.count(of: "checkout.session") == sessions)
        }
    }

    @Test func expiredAndFailedSessionsCloseTheirTopUps() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let expired = try await harness.seedTopUp(tenant, credits: 500)
            let failed = try await harness.seedTopUp(tenant, credits: 600)
            for (topUp, type, id) in [(expired, "checkout.session.expired", "evt_exp"), (failed, "checkout.session.async_payment_failed", "evt_fail")] {
                let session: String = try await harness.owner {
                    try await $0.first("SELECT session_id FROM billing.top_ups WHERE top_up_id = '\(topUp)'") ?? ""
                }
                let object = EventHarness.object("checkout.session", [
                    "id": session, "mode": "payment", "status": type.hasSuffix("expired") ? "expired" : "complete",
                    "client_reference_id": tenant.uuidString.lowercased(),
                    "metadata": ["tenant_id": tenant.uuidString.lowercased(), "purpose": "credit_topup"],
                ])
                try await harness.deliver(EventHarness.event(id, type, object, created: harness.now))
            }
            // A decline is recorded on the top-up, which stays payable.
            let declined = EventHarness.object("payment_intent", [
                "id": "pi_declined", "status": "requires_payment_method", "amount": 700, "currency": "usd",
                "last_payment_error": ["type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."],
                "metadata": ["tenant_id": tenant.uuidString.lowercased(), "purpose": "credit_topup"],
            ])
            let payable = try await harness.seedTopUp(tenant, credits: 700)
            var withTopUp = declined
            withTopUp["metadata"] = ["tenant_id": tenant.uuidString.lowercased(), "purpose": "credit_topup", "top_up_id": payable.uuidString.lowercased()]
            try await harness.deliver(EventHarness.event("evt_declined", "payment_intent.payment_failed", withTopUp, created: harness.now))
            try await harness.drain()
            let statuses: String? = try await harness.owner {
                try await $0.first("SELECT string_agg(credits || ':' || status || ':' || coalesce(last_failure, '-'), ',' ORDER BY credits) FROM billing.top_ups")
            }
            #expect(statuses == "500:expired:-,600:failed:the asynchronous payment failed,700:pending:card_declined: generic_decline: Your card was declined.")
            #expect(try await harness.balance(tenant) == (0, 0))
        }
    }
}

@Suite struct SubscriptionEventTests {
    /// A team subscription's life: created, activated, seats changed, past due, recovered and set to cancel, deleted;
    /// plus a late `updated` created before the deletion and one created after it.
    static func lifetime(subscription: String, customer: String, base: Int) -> [(String, [UInt8])] {
        func event(_ n: Int, _ type: String, _ offset: Int, _ object: [String: Any]) -> (String, [UInt8]) {
            let id = "evt_\(subscription)_\(n)"
            return (id, EventHarness.event(id, type, object, created: base + offset))
        }
        let sub = { (status: String, quantity: Int, cancel: Bool) in
            EventHarness.subscription(subscription, customer: customer, quantity: quantity, status: status, cancelAtPeriodEnd: cancel)
        }
        return [
            event(1, "customer.subscription.created", 0, sub("incomplete", 3, false)),
            event(2, "customer.subscription.updated", 10, sub("active", 3, false)),
            event(3, "customer.subscription.updated", 20, sub("active", 5, false)),
            event(4, "customer.subscription.updated", 30, sub("past_due", 5, false)),
            event(5, "customer.subscription.updated", 40, sub("active", 60, true)),
            event(6, "customer.subscription.deleted", 50, sub("canceled", 60, true)),
            event(7, "customer.subscription.updated", 45, sub("active", 7, false)),
            event(8, "customer.subscription.updated", 55, sub("active", 8, false)),
        ]
    }

    @Test func aShuffledLifetimeEndsWhereTheOrderedOneDoes() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let base = harness.now - 1000
            var finals: [String?] = []
            for run in 0..<5 {
                let customer = "cus_life_\(run)"
                let tenant = try await harness.tenant(customer: customer)
                var events = Self.lifetime(subscription: "sub_life_\(run)", customer: customer, base: base)
                if run > 0 {
                    var generator = SeededGenerator(state: UInt64(run) * 7919)
                    events.shuffle(using: &generator)
                }
                try await harness.deliverInTurn(events.map(\.1))
                finals.append(try await harness.subscriptionState(tenant))
                // The deletion always applies; in order, the late `updated` events after it are stale and revive nothing.
                #expect(try await harness.eventStatus("evt_sub_life_\(run)_6") == "processed")
                if run == 0 {
                    #expect(try await harness.eventStatus("evt_sub_life_\(run)_7") == "stale")
                    #expect(try await harness.eventStatus("evt_sub_life_\(run)_8") == "stale")
                }
            }
            // Seats from Stripe are brought into the team plan's range (3-50).
            #expect(finals[0] == "team month 50 canceled 2030-03-17 true false")
            #expect(Set(finals).count == 1, "\(finals)")
        }
    }

    @Test func pastDueCountsFromTheEventThatMadeItSoInAnyOrder() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let base = harness.now - 1000
            for run in 0..<3 {
                let customer = "cus_due_\(run)"
                let tenant = try await harness.tenant(customer: customer)
                var events = Array(Self.lifetime(subscription: "sub_due_\(run)", customer: customer, base: base).prefix(4))
                var generator = SeededGenerator(state: UInt64(run + 1) * 104_729)
                events.shuffle(using: &generator)
                for (_, body) in events { try await harness.deliver(body) }
                try await harness.drain()
                let since: Date? = try await harness.owner {
                    try await $0.first("SELECT past_due_since FROM billing.subscriptions WHERE tenant_id = '\(tenant)'")
                }
                #expect(since == Date(timeIntervalSince1970: Double(base + 30)))
                let admin = try await server.token(.admin, tenant: tenant)
                let status = try await client.rpc("billing.status", token: admin)
                #expect(status["result"]?["status"] == "past_due")
                #expect(status["result"]?["seats"] == 5)
            }
        }
    }

    @Test func olderPayloadsWithPlanIdsAndPeriodsOnTheSubscriptionAreRead() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_legacy")
            let object = EventHarness.subscription(
                "sub_legacy", customer: "cus_legacy", price: "price_pro_year", quantity: 4, periodEnd: 1_950_000_000, legacy: true)
            try await harness.deliver(EventHarness.event("evt_legacy", "customer.subscription.created", object, created: harness.now))
            try await harness.drain()
            // Pro has exactly one seat: Stripe's 4 is normalized.
            #expect(try await harness.subscriptionState(tenant) == "pro year 1 active 2031-10-17 false false")
        }
    }

    @Test func anUnknownPriceFailsTheEventVisiblyAndChangesNothing() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_price")
            let object = EventHarness.subscription("sub_price", customer: "cus_price", price: "price_from_elsewhere")
            try await harness.deliver(EventHarness.event("evt_price", "customer.subscription.created", object, created: harness.now))
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_price") == "failed")
            #expect(try await harness.eventError("evt_price")?.contains("price_from_elsewhere, which is not in the plan catalog") == true)
            #expect(try await harness.subscriptionState(tenant) == nil)
        }
    }

    @Test func eventsSharingATimestampAreDecidedByStripesCurrentObject() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let started = try await client.rpc("billing.checkout", ["plan": "archon", "seats": 3], token: admin)
            _ = await server.standIn!.complete(try #require(started["result"]?["sessionId"]?.stringValue), outcome: .pay)
            for event in try await server.stripe!.listEvents().events.reversed() { try await harness.deliver(Array(event.raw)) }
            try await harness.drain()
            // The team plan starts with a trial.
            #expect(try await harness.subscriptionState(tenant)?.hasPrefix("team month 3 trialing") == true)

            // Stripe now says 7 seats; two events of one second say 4 and 6.
            let subscriptionID: String = try await harness.owner {
                try await $0.first("SELECT stripe_subscription_id FROM billing.subscriptions WHERE tenant_id = '\(tenant)'") ?? ""
            }
            let current = try await server.stripe!.retrieveSubscription(subscriptionID)
            _ = try await server.stripe!.updateSubscription(subscriptionID, [
                "items": [["id": .string(current.items.data[0].id), "quantity": 7]],
            ], idempotencyKey: UUID().uuidString)
            let second = harness.now + 100
            for (id, quantity) in [("evt_same_a", 4), ("evt_same_b", 6)] {
                let object = EventHarness.subscription(subscriptionID, customer: current.customer!.id, quantity: quantity,
                                                       metadata: ["tenant_id": tenant.uuidString.lowercased()])
                try await harness.deliver(EventHarness.event(id, "customer.subscription.updated", object, created: second))
                try await harness.drain()
            }
            #expect(try await harness.subscriptionState(tenant)?.hasPrefix("team month 7 trialing") == true)
        }
    }

    /// A late event about the tenant's older subscription never takes "current" from its newer one.
    @Test func theNewestLiveSubscriptionStaysCurrentWhateverArrivesLate() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_two")
            let base = harness.now - 500
            var newer = EventHarness.subscription("sub_newer", customer: "cus_two", price: "price_pro_month", quantity: 1)
            newer["created"] = base + 100
            var older = EventHarness.subscription("sub_older", customer: "cus_two", quantity: 3)
            older["created"] = base
            var olderEnded = older
            olderEnded["status"] = "canceled"
            try await harness.deliverInTurn([
                EventHarness.event("evt_newer", "customer.subscription.created", newer, created: base + 100),
                // Stripe's retry of the older subscription's creation, long after.
                EventHarness.event("evt_older", "customer.subscription.created", older, created: base + 1),
                EventHarness.event("evt_older_end", "customer.subscription.deleted", olderEnded, created: base + 90),
            ])
            #expect(try await harness.subscriptionState(tenant)?.hasPrefix("pro month 1 active") == true)
            #expect(try await harness.count("SELECT count(*)::int FROM billing.subscriptions WHERE tenant_id = '\(tenant)'") == 2)
        }
    }

    @Test func customerDeletedUnlinksTheCustomerAndEndsTheEntitlement() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_gone")
            let object = EventHarness.subscription("sub_gone", customer: "cus_gone")
            try await harness.deliver(EventHarness.event("evt_gone_1", "customer.subscription.created", object, created: harness.now - 5))
            try await harness.deliver(EventHarness.event(
                "evt_gone_2", "customer.deleted", EventHarness.object("customer", ["id": "cus_gone"]), created: harness.now))
            try await harness.drain()
            let admin = try await server.token(.admin, tenant: tenant)
            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["status"] == "canceled")
            #expect(status["result"]?["entitled"] == false)
            let customer: String? = try await harness.owner {
                try await $0.first("SELECT coalesce(stripe_customer_id, 'none') FROM billing.tenants WHERE id = '\(tenant)'")
            }
            #expect(customer == "none")
        }
    }
}

@Suite struct TenantResolutionTests {
    @Test func anEventWithNoTenantYetWaitsUntilALaterEventLinksIt() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            // Created in Stripe before the Checkout Session's completion reached us: no metadata, an unknown customer.
            let created = EventHarness.subscription("sub_early", customer: "cus_early", quantity: 4)
            try await harness.deliver(EventHarness.event("evt_early", "customer.subscription.created", created, created: harness.now - 2))
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_early") == "unresolved")

            let session = EventHarness.object("checkout.session", [
                "id": "cs_early", "mode": "subscription", "status": "complete", "payment_status": "paid",
                "customer": "cus_early", "subscription": "sub_early", "client_reference_id": tenant.uuidString.lowercased(),
                "metadata": ["plan": "team", "interval": "month", "seats": "4"],
            ])
            try await harness.deliver(EventHarness.event("evt_link", "checkout.session.completed", session, created: harness.now))
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_link") == "processed")
            #expect(try await harness.eventStatus("evt_early") == "processed")
            #expect(try await harness.subscriptionState(tenant) == "team month 4 active 2030-03-17 false false")
        }
    }

    /// A link wakes only the unresolved events waiting for what it linked: events about other products' customers
    /// on the same Stripe account are left to their backoff. (Backoff here is ten minutes, so only a wake makes an
    /// event due during the test.)
    @Test func aLinkWakesOnlyTheEventsWaitingForIt() async throws {
        var extra = EventHarness.extra
        extra["BILLING_INBOX_RETRY_INITIAL_MS"] = "600000"
        extra["BILLING_INBOX_RETRY_MAX_MS"] = "600000"
        let configured = extra
        try await TestServer.run(extra: configured) { client, server in
            let harness = EventHarness(client: client, server: server, extra: configured)
            let future = UUID()
            let due = { () async throws -> String? in
                try await harness.owner {
                    try await $0.first("""
                        SELECT coalesce(string_agg(event_id, ' ' ORDER BY event_id), '') FROM billing.stripe_events
                        WHERE status = 'unresolved' AND next_attempt_at <= clock_timestamp()
                        """)
                }
            }
            // For a tenant not provisioned yet, for another product's customer, and a refund of an unknown payment.
            try await harness.deliverInTurn([
                EventHarness.event("evt_w_future", "customer.subscription.created", EventHarness.subscription(
                    "sub_w_future", customer: "cus_w_future", metadata: ["tenant_id": future.uuidString.lowercased()]), created: harness.now),
                EventHarness.event("evt_w_foreign", "customer.subscription.created",
                                   EventHarness.subscription("sub_w_foreign", customer: "cus_w_foreign"), created: harness.now),
                EventHarness.event("evt_w_refund", "refund.created", EventHarness.object("refund", [
                    "id": "re_w", "payment_intent": "pi_w", "charge": "ch_w", "amount": 100, "metadata": ["tenant_id": future.uuidString.lowercased()],
                ]), created: harness.now),
            ])
            let waiting: String? = try await harness.owner {
                try await $0.first("""
                    SELECT string_agg(event_id || '=' || array_to_string(waiting_for, ','), ' ' ORDER BY event_id)
                    FROM billing.stripe_events WHERE status = 'unresolved'
                    """)
            }
            #expect(waiting == "evt_w_foreign=sub_w_foreign,cus_w_foreign evt_w_future=\(future.uuidString.lowercased()),sub_w_future,cus_w_future evt_w_refund=\(future.uuidString.lowercased()),pi_w,ch_w")
            #expect(try await due() == "")

            // Provisioning the tenant wakes what names it, and nothing else; the refund then waits for its payment.
            _ = try await server.provision(client, id: future)
            #expect(try await due() == "evt_w_future evt_w_refund")
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_w_future") == "processed")
            #expect(try await harness.eventStatus("evt_w_refund") == "unresolved")
            #expect(try await harness.eventError("evt_w_refund")?.contains("payment not recorded yet") == true)
            #expect(try await due() == "")

            // The payment's own event wakes the refund; the foreign customer's event still sleeps.
            try await harness.deliver(EventHarness.event("evt_w_pi", "payment_intent.succeeded", EventHarness.object("payment_intent", [
                "id": "pi_w", "status": "succeeded", "amount": 900, "amount_received": 900, "latest_charge": "ch_w",
                "metadata": ["tenant_id": future.uuidString.lowercased()],
            ]), created: harness.now))
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_w_refund") == "processed")
            #expect(try await harness.eventStatus("evt_w_foreign") == "unresolved")
            #expect(try await due() == "")
        }
    }

    /// Another product's event on the same Stripe account never resolves here: after
    /// BILLING_INBOX_UNRESOLVED_PARK_DAYS it is parked, kept and listed, skipped by claims however long overdue, still
    /// woken by its link, and replayable by an operator.
    @Test func anEventUnresolvedForDaysIsParkedKeptAndStillWoken() async throws {
        var extra = EventHarness.extra
        extra["BILLING_INBOX_RETRY_INITIAL_MS"] = "1"
        extra["BILLING_INBOX_RETRY_MAX_MS"] = "1"
        extra["BILLING_INBOX_UNRESOLVED_PARK_DAYS"] = "2"
        let configured = extra
        try await TestServer.run(extra: configured) { client, server in
            let harness = EventHarness(client: client, server: server, extra: configured)
            for tag in ["old", "new"] {
                try await harness.deliver(EventHarness.event(
                    "evt_park_\(tag)", "customer.subscription.created",
                    EventHarness.subscription("sub_park_\(tag)", customer: "cus_park_\(tag)"), created: harness.now))
            }
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_park_old") == "unresolved")

            // One was received three days ago, the other one day ago: only the first is parked on its next try.
            try await harness.owner {
                try await $0.run("""
                    UPDATE billing.stripe_events SET received_at = now() - interval '3 days', next_attempt_at = now()
                    WHERE event_id = 'evt_park_old'
                    """)
                try await $0.run("""
                    UPDATE billing.stripe_events SET received_at = now() - interval '1 day', next_attempt_at = now()
                    WHERE event_id = 'evt_park_new'
                    """)
            }
            let outcomes = try await harness.drain().filter { $0.event.id == "evt_park_old" }
            #expect(outcomes.map(\.label) == ["unresolved_parked"])
            #expect(try await harness.eventStatus("evt_park_old") == "parked")
            #expect(try await harness.eventStatus("evt_park_new") == "unresolved")

            // However overdue, a parked event is not claimed again.
            try await harness.owner {
                try await $0.run("UPDATE billing.stripe_events SET next_attempt_at = now() - interval '1 day' WHERE event_id = 'evt_park_old'")
            }
            #expect(try await harness.drain().allSatisfy { $0.event.id != "evt_park_old" })
            #expect(try await harness.eventStatus("evt_park_old") == "parked")

            // Listed by `billingd events list --status parked`.
            let (status, output, errors) = try await Billingd.run(["events", "list", "--status", "parked"], environment: [
                "DATABASE_URL": server.database.appURL.secretURLString,
            ])
            #expect(status == 0, "\(errors)")
            #expect(output.contains("evt_park_old") && !output.contains("evt_park_new"))

            // Replayed by an operator, it is tried once more and, still unresolvable, parked again.
            let (retried, _, retryErrors) = try await Billingd.run(["events", "retry", "evt_park_old"], environment: [
                "DATABASE_URL": server.database.appURL.secretURLString,
            ])
            #expect(retried == 0, "\(retryErrors)")
            #expect(try await harness.drain().filter { $0.event.id == "evt_park_old" }.map(\.label) == ["unresolved_parked"])

            // The customer's link wakes it: unresolved again, due at once, and applied to the tenant.
            let tenant = try await harness.tenant(customer: "cus_park_old")
            try await server.database.withAppClient { await EventInbox(database: $0).wakeUnresolved(linked: ["cus_park_old"]) }
            #expect(try await harness.eventStatus("evt_park_old") == "unresolved")
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_park_old") == "processed")
            #expect(try await harness.subscriptionState(tenant) != nil)
        }
    }

    /// Our own links come first (subscription, then customer, then payment); metadata only when none is known here;
    /// and when they disagree, the event fails naming both tenants and changes nothing.
    @Test func ourLinksComeFirstAndADisagreementFailsNamingBothTenants() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenantA = try await harness.tenant(customer: "cus_a")
            let tenantB = try await harness.tenant(customer: "cus_b")
            try await harness.deliver(EventHarness.event(
                "evt_sub_a", "customer.subscription.created", EventHarness.subscription("sub_a", customer: "cus_a"), created: harness.now - 10))
            try await harness.drain()

            // An invoice whose customer we do not know, for A's subscription (current shape: parent.subscription_details).
            let invoice = EventHarness.object("invoice", [
                "id": "in_a", "customer": "cus_unknown", "status": "paid", "amount_paid": 4500, "amount_due": 4500,
                "parent": ["type": "subscription_details", "subscription_details": ["subscription": "sub_a", "metadata": NSNull()]],
            ])
            try await harness.deliver(EventHarness.event("evt_in_a", "invoice.paid", invoice, created: harness.now))
            // A PaymentIntent of A's customer whose metadata names B: it fails, naming both.
            let intent = EventHarness.object("payment_intent", [
                "id": "pi_meta", "status": "succeeded", "amount": 300, "amount_received": 300, "customer": "cus_a",
                "latest_charge": "ch_meta", "metadata": ["tenantId": tenantB.uuidString.lowercased()],
            ])
            try await harness.deliver(EventHarness.event("evt_pi_meta", "payment_intent.succeeded", intent, created: harness.now))
            // A PaymentIntent of an unknown customer whose metadata names B: metadata is all there is, so B.
            let unknownCustomer = EventHarness.object("payment_intent", [
                "id": "pi_meta_only", "status": "succeeded", "amount": 200, "amount_received": 200, "customer": "cus_elsewhere",
                "latest_charge": "ch_meta_only", "metadata": ["tenant_id": tenantB.uuidString.lowercased()],
            ])
            try await harness.deliver(EventHarness.event("evt_pi_meta_only", "payment_intent.succeeded", unknownCustomer, created: harness.now))
            // A's subscription, but B's customer: two links that disagree.
            try await harness.deliver(EventHarness.event(
                "evt_sub_mixed", "customer.subscription.updated", EventHarness.subscription("sub_a", customer: "cus_b", quantity: 9),
                created: harness.now))
            try await harness.drain()

            let invoiceTenant: String? = try await harness.owner {
                try await $0.first("SELECT tenant_id::text FROM billing.stripe_invoices WHERE invoice_id = 'in_a'")
            }
            #expect(invoiceTenant == tenantA.uuidString.lowercased())
            #expect(try await harness.count("SELECT count(*)::int FROM billing.payments WHERE payment_id = 'pi_meta'") == 0)
            let paymentTenant: String? = try await harness.owner {
                try await $0.first("SELECT tenant_id::text FROM billing.payments WHERE payment_id = 'pi_meta_only'")
            }
            #expect(paymentTenant == tenantB.uuidString.lowercased())
            for event in ["evt_pi_meta", "evt_sub_mixed"] {
                #expect(try await harness.eventStatus(event) == "failed")
                let error = try await harness.eventError(event) ?? ""
                #expect(error.contains(tenantA.uuidString.lowercased()) && error.contains(tenantB.uuidString.lowercased()), "\(error)")
            }
            #expect(try await harness.eventError("evt_sub_mixed")?.contains("subscription sub_a") == true)
            #expect(try await harness.subscriptionState(tenantA)?.hasPrefix("team month 3 ") == true)
            #expect(try await harness.subscriptionState(tenantB) == nil)
        }
    }
}

@Suite struct RefundAndDisputeTests {
    @Test func refundsTakeBackTheRefundedShareAndDisputesFreezeThenSettle() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let (_, intent, charge) = try await harness.paidTopUp(tenant, credits: 1000, tag: "one")
            #expect(try await harness.balance(tenant) == (1000, 0))

            // 30% refunded: 300 credits taken back. Delivered twice and with an older, smaller figure after it.
            let refunded = EventHarness.charge(charge, intent: intent, amount: 1000, refunded: 300)
            try await harness.deliverInTurn([
                EventHarness.event("evt_ref_1", "charge.refunded", refunded, created: harness.now),
                EventHarness.event("evt_ref_1", "charge.refunded", refunded, created: harness.now),
                EventHarness.event(
                    "evt_ref_0", "charge.refunded", EventHarness.charge(charge, intent: intent, amount: 1000, refunded: 100),
                    created: harness.now - 60),
            ])
            #expect(try await harness.balance(tenant) == (700, 0))

            // A dispute freezes what remains; losing it takes it.
            let dispute = EventHarness.object("dispute", ["id": "dp_one", "charge": charge, "amount": 700, "status": "needs_response"])
            try await harness.deliver(EventHarness.event("evt_dp_1", "charge.dispute.created", dispute, created: harness.now))
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (0, 700))
            var lost = dispute
            lost["status"] = "lost"
            try await harness.deliver(EventHarness.event("evt_dp_2", "charge.dispute.closed", lost, created: harness.now + 1))
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (0, 0))

            // Another payment's dispute is won: its credits come back.
            let (_, _, charge2) = try await harness.paidTopUp(tenant, credits: 500, tag: "two")
            let dispute2 = EventHarness.object("dispute", ["id": "dp_two", "charge": charge2, "amount": 500, "status": "needs_response"])
            var won = dispute2
            won["status"] = "won"
            // The close arrives before the opening: the opening is then stale.
            try await harness.deliverInTurn([
                EventHarness.event("evt_dp2_close", "charge.dispute.closed", won, created: harness.now + 1),
                EventHarness.event("evt_dp2_open", "charge.dispute.created", dispute2, created: harness.now),
            ])
            #expect(try await harness.balance(tenant) == (500, 0))
            #expect(try await harness.eventStatus("evt_dp2_open") == "stale")

            let ledger: String? = try await harness.owner {
                try await $0.first("SELECT string_agg(kind || ':' || amount || '/' || frozen_delta, ' ' ORDER BY entry_id) FROM billing.credit_ledger")
            }
            #expect(ledger == "topup:1000/0 refund:-300/0 dispute_freeze:-700/700 dispute_loss:0/-700 topup:500/0")
            #expect(try await harness.count("SELECT count(*)::int FROM billing.disputes WHERE closed_at IS NOT NULL") == 2)
        }
    }

    @Test func aRefundAfterTheCreditsWereSpentLeavesADebt() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let (_, intent, charge) = try await harness.paidTopUp(tenant, credits: 1000, tag: "debt")
            // 900 credits spent (as consumption will record it).
            try await harness.owner {
                try await $0.run("SELECT billing.append_credit_entry('\(tenant)', 'consume:test', 'consumption', -900, 0, 'used', NULL)")
            }
            try await harness.deliver(EventHarness.event(
                "evt_full", "charge.refunded", EventHarness.charge(charge, intent: intent, amount: 1000, refunded: 1000), created: harness.now))
            try await harness.drain()
            #expect(try await harness.balance(tenant) == (-900, 0))
        }
    }

    /// A refund that fails after it succeeded (the card was closed) gives its credits back once, whatever order its
    /// events arrive in; a later refund of the same payment takes its share again.
    @Test func aFailedRefundGivesItsCreditsBackInAnyOrder() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let now = harness.now
            let refund = { (id: String, charge: String, intent: String, amount: Int, status: String, created: Int) in
                EventHarness.object("refund", [
                    "id": id, "charge": charge, "payment_intent": intent, "amount": amount, "status": status, "created": created,
                    "failure_reason": status == "failed" ? "expired_or_canceled_card" : NSNull(),
                ])
            }

            // In order: refunded (300 credits taken back), then failed (given back).
            let (_, intent, charge) = try await harness.paidTopUp(tenant, credits: 1000, tag: "fails")
            let succeeded = refund("re_fails", charge, intent, 300, "succeeded", now)
            try await harness.deliverInTurn([
                EventHarness.event("evt_f_created", "refund.created", succeeded, created: now),
                EventHarness.event("evt_f_charge", "charge.refunded", EventHarness.charge(charge, intent: intent, amount: 1000, refunded: 300), created: now),
            ])
            #expect(try await harness.balance(tenant) == (700, 0))
            let failed = refund("re_fails", charge, intent, 300, "failed", now)
            try await harness.deliverInTurn([
                EventHarness.event("evt_f_failed", "refund.failed", failed, created: now + 5),
                EventHarness.event("evt_f_updated", "charge.refund.updated", failed, created: now + 5),
                // Late and older: the refund stays failed and the charge's old figure takes nothing again.
                EventHarness.event("evt_f_late", "refund.updated", succeeded, created: now + 1),
                EventHarness.event("evt_f_charge_late", "charge.refunded", EventHarness.charge(charge, intent: intent, amount: 1000, refunded: 300), created: now + 1),
            ])
            #expect(try await harness.balance(tenant) == (1000, 0))
            #expect(try await harness.count("SELECT count(*)::int FROM billing.refunds WHERE refund_id = 're_fails' AND status = 'failed' AND failure_reason = 'expired_or_canceled_card'") == 1)
            #expect(try await harness.count("SELECT amount_refunded::int FROM billing.payments WHERE payment_id = '\(intent)'") == 0)

            // The payment is refunded again, for real this time: the charge's figure is 500 (the failed 300 no longer in
            // it). Until the refund itself arrives, only 200 of it can be told from the failed one; then the rest.
            try await harness.deliverInTurn([
                EventHarness.event("evt_f2_charge", "charge.refunded", EventHarness.charge(charge, intent: intent, amount: 1000, refunded: 500), created: now + 10),
                EventHarness.event("evt_f2_created", "refund.created", refund("re_again", charge, intent, 500, "succeeded", now + 10), created: now + 10),
            ])
            #expect(try await harness.balance(tenant) == (500, 0))

            // Another payment whose refund's events arrive backwards: the failure first. Nothing is ever taken.
            let (_, intent2, charge2) = try await harness.paidTopUp(tenant, credits: 400, tag: "backwards")
            try await harness.deliverInTurn([
                EventHarness.event("evt_b_failed", "refund.failed", refund("re_back", charge2, intent2, 400, "failed", now), created: now + 5),
                EventHarness.event("evt_b_charge", "charge.refunded", EventHarness.charge(charge2, intent: intent2, amount: 400, refunded: 400), created: now),
                EventHarness.event("evt_b_created", "refund.created", refund("re_back", charge2, intent2, 400, "succeeded", now), created: now),
            ])
            #expect(try await harness.balance(tenant) == (900, 0))

            let ledger: String? = try await harness.owner {
                try await $0.first("SELECT string_agg(kind || ':' || amount, ' ' ORDER BY entry_id) FROM billing.credit_ledger")
            }
            #expect(ledger == "topup:1000 refund:-300 refund_reversal:300 refund:-200 refund:-300 topup:400")
            let actions: String? = try await harness.owner {
                try await $0.first("SELECT string_agg(action, ' ' ORDER BY event_id) FROM billing.audit_events WHERE action LIKE 'refund.%'")
            }
            #expect(actions == "refund.recorded refund.failed refund.recorded refund.recorded")
        }
    }

    @Test func aRefundForAPaymentNotYetRecordedWaitsForThePayment() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let refund = EventHarness.object("refund", [
                "id": "re_early", "charge": "ch_later", "payment_intent": "pi_later", "amount": 200,
                "metadata": ["tenant_id": tenant.uuidString.lowercased()],
            ])
            try await harness.deliver(EventHarness.event("evt_re_early", "refund.created", refund, created: harness.now))
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_re_early") == "unresolved")
            #expect(try await harness.eventError("evt_re_early")?.contains("payment not recorded yet") == true)

            // The payment's own event records it and wakes the refund.
            let intent = EventHarness.object("payment_intent", [
                "id": "pi_later", "status": "succeeded", "amount": 900, "amount_received": 900, "latest_charge": "ch_later",
                "metadata": ["tenant_id": tenant.uuidString.lowercased()],
            ])
            try await harness.deliver(EventHarness.event("evt_pi_later", "payment_intent.succeeded", intent, created: harness.now))
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_re_early") == "processed")
            #expect(try await harness.count("SELECT count(*)::int FROM billing.refunds WHERE payment_id = 'pi_later' AND amount = 200") == 1)
        }
    }
}

@Suite struct FailureTests {
    /// A failing event is retried with backoff, then parked with its error; once an operator fixes the cause,
    /// `billingd events retry` replays it.
    @Test func aFailingEventIsRetriedThenParkedThenReplayedAfterTheFix() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_fix")
            // Two events of one second about one subscription need Stripe's current object; this server has no Stripe.
            let second = harness.now
            for (id, quantity) in [("evt_tie_a", 3), ("evt_tie_b", 4)] {
                try await harness.deliver(EventHarness.event(
                    id, "customer.subscription.updated", EventHarness.subscription("sub_tie", customer: "cus_fix", quantity: quantity),
                    created: second))
            }
            for _ in 0..<20 {
                if try await harness.eventStatus("evt_tie_b") == "failed" { break }
                try await harness.drain()
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(try await harness.eventStatus("evt_tie_b") == "failed")
            #expect(try await harness.count("SELECT attempts FROM billing.stripe_events WHERE event_id = 'evt_tie_b'") == 3)
            #expect(try await harness.eventError("evt_tie_b")?.contains("Stripe is not configured") == true)

            // A price the catalog did not know fails at once; with the price configured, a replay applies it.
            let object = EventHarness.subscription("sub_new_price", customer: "cus_fix", price: "price_team_month_2027")
            try await harness.deliver(EventHarness.event("evt_new_price", "customer.subscription.created", object, created: second + 1))
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_new_price") == "failed")
            let (status, _, errors) = try await Billingd.run(["events", "retry", "evt_new_price"], environment: [
                "DATABASE_URL": server.database.appURL.secretURLString,
            ])
            #expect(status == 0, "\(errors)")
            #expect(try await harness.eventStatus("evt_new_price") == "pending")
            try await harness.drain(priceOverrides: ["STRIPE_PRICE_TEAM_MONTH": "price_team_month_2027"])
            #expect(try await harness.eventStatus("evt_new_price") == "processed")
            #expect(try await harness.subscriptionState(tenant)?.hasPrefix("team month 3 active") == true)
        }
    }
}

@Suite struct InvoiceEventTests {
    @Test func invoiceEventsRecordStatusAndPaymentProblemsInOrder() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_inv")
            let base = harness.now
            let invoice = { (status: String, paid: Int) in
                EventHarness.object("invoice", [
                    "id": "in_inv", "customer": "cus_inv", "status": status, "amount_due": 4500, "amount_paid": paid,
                    "amount_remaining": 4500 - paid, "attempt_count": 1, "hosted_invoice_url": "https://invoice.example/in_inv",
                ])
            }
            // They arrive newest first.
            try await harness.deliverInTurn([
                EventHarness.event("evt_inv_paid", "invoice.paid", invoice("paid", 4500), created: base + 20),
                EventHarness.event("evt_inv_failed", "invoice.payment_failed", invoice("open", 0), created: base + 10),
                EventHarness.event("evt_inv_final", "invoice.finalized", invoice("open", 0), created: base),
            ])
            let row: String? = try await harness.owner {
                try await $0.first("""
                    SELECT concat_ws(' ', tenant_id, status, amount_paid, coalesce(payment_problem, '-'))
                    FROM billing.stripe_invoices WHERE invoice_id = 'in_inv'
                    """)
            }
            #expect(row == "\(tenant.uuidString.lowercased()) paid 4500 -")
            #expect(try await harness.eventStatus("evt_inv_failed") == "stale")

            // Stripe sends finalized and paid in one second, in either order: the invoice never goes back to open.
            let sameSecond = base + 60
            let second = { (status: String, paid: Int) in
                EventHarness.object("invoice", ["id": "in_tie", "customer": "cus_inv", "status": status, "amount_due": 900, "amount_paid": paid])
            }
            try await harness.deliverInTurn([
                EventHarness.event("evt_tie_paid", "invoice.paid", second("paid", 900), created: sameSecond),
                EventHarness.event("evt_tie_final", "invoice.finalized", second("open", 0), created: sameSecond),
            ])
            #expect(try await harness.eventStatus("evt_tie_final") == "stale")
            #expect(try await harness.count("SELECT amount_paid::int FROM billing.stripe_invoices WHERE invoice_id = 'in_tie'") == 900)
        }
    }
}
