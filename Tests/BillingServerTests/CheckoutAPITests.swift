import Billing
import BillingCore
import BillingServer
import BillingStore
import BillingDevSupport
import Foundation
import HummingbirdTesting
import JSONRPC
import StripeAPI
import StripeStandIn
import Testing

/// The money paths that start in the API, through the running server and the Stripe stand-in over real HTTP.
/// None of them changes a balance or a plan: only Stripe's confirmation does (the webhook issue).
@Suite struct TopUpTests {
    @Test func aTopUpReturnsACheckoutURLAndLeavesTheBalanceAlone() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let response = try await client.rpc("billing.topUp", ["credits": 500, "idempotencyKey": "click-1"], token: admin)
            let sessionID = try #require(response["result"]?["sessionId"]?.stringValue)
            #expect(response["result"]?["checkoutUrl"]?.stringValue == "http://stand-in.test/checkout/\(sessionID)")

            let session = try await #require(server.stripe).retrieveCheckoutSession(sessionID)
            #expect(session.mode == "payment")
            #expect(session.amountTotal == 500)
            #expect(session.metadata?["tenant_id"] == tenant.uuidString.lowercased())
            #expect(session.metadata?["purpose"] == "credit_topup")
            #expect(session.metadata?["credits"] == "500")
            #expect(session.metadata?["top_up_id"] != nil)
            #expect(session.clientReferenceID == tenant.uuidString.lowercased())

            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["creditBalance"] == 0)
        }
    }

    @Test func theSameKeyGivesOneSessionAndAnotherAmountIsAConflict() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let owner = try await server.token(.owner, tenant: tenant)
            let first = try await client.rpc("billing.topUp", ["credits": 800, "idempotencyKey": "double-click"], token: owner)
            let second = try await client.rpc("billing.topUp", ["credits": 800, "idempotencyKey": "double-click"], token: owner)
            #expect(first["result"] == second["result"])
            #expect(await server.standIn?.count(of: "checkout.session") == 1)

            let conflict = try await client.rpc("billing.topUp", ["credits": 900, "idempotencyKey": "double-click"], token: owner)
            #expect(conflict.errorCode == -32009)
            #expect(conflict["error"]?["data"]?["credits"] == 800)
            #expect(conflict.errorMessage.contains("800"))

            // Without a key, each call is a new purchase.
            _ = try await client.rpc("billing.topUp", ["credits": 800], token: owner)
            #expect(await server.standIn?.count(of: "checkout.session") == 2)
        }
    }

    @Test func theKeyIsFreedOnlyWhenStripeSaysTheSessionExpired() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let first = try await client.rpc("billing.topUp", ["credits": 600, "idempotencyKey": "k-expire"], token: admin)
            let firstSession = try #require(first["result"]?["sessionId"]?.stringValue)
            // Past its time here, but Stripe still has it open: it may yet be paid, so the key still names it.
            try await server.database.withOwnerClient { owner in
                try await owner.query(
                    "UPDATE billing.checkout_sessions SET expires_at = now() - interval '1 minute' WHERE session_id = \(firstSession)",
                    logger: .init(label: "test"))
            }
            let again = try await client.rpc("billing.topUp", ["credits": 600, "idempotencyKey": "k-expire"], token: admin)
            #expect(again["result"]?["sessionId"]?.stringValue == firstSession)
            // Once Stripe expired it unpaid, the key starts a new top-up.
            _ = try await #require(server.stripe).expireCheckoutSession(firstSession, idempotencyKey: UUID().uuidString)
            let second = try await client.rpc("billing.topUp", ["credits": 700, "idempotencyKey": "k-expire"], token: admin)
            let secondSession = try #require(second["result"]?["sessionId"]?.stringValue)
            #expect(secondSession != firstSession)
            #expect(try await #require(server.stripe).retrieveCheckoutSession(secondSession).metadata?["credits"] == "700")
        }
    }

    /// Stripe executed the request but the answer never arrived: the call fails and rolls back, and the user's
    /// retry asks Stripe with the same key and gets the same session, not a second one.
    @Test func aRetryAfterALostAnswerGetsTheSameSession() async throws {
        // A timeout every other call meets easily on a loaded machine, and a delay well beyond it.
        let slowStripe = ["BILLING_STRIPE_TIMEOUT_MS": "1500", "BILLING_STRIPE_MAX_ATTEMPTS": "1"]
        try await TestServer.run(extra: slowStripe, stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let standIn = try #require(server.standIn)
            await standIn.inject(StandInFault(kind: .delay, path: "/v1/checkout/sessions", count: 1, delayMilliseconds: 4000))
            let lost = try await client.rpc("billing.topUp", ["credits": 900], token: admin)
            #expect(lost.errorName == "SERVICE_UNAVAILABLE")
            // Stripe made the session after all, once its delay was over.
            #expect(try await DurabilityTests.eventually { await standIn.count(of: "checkout.session") == 1 })
            let retried = try await client.rpc("billing.topUp", ["credits": 900], token: admin)
            #expect(retried["result"]?["sessionId"] != nil)
            #expect(await standIn.count(of: "checkout.session") == 1)
        }
    }

    @Test func badTopUpsAreRefusedWithWhatToChange() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            for credits in [0, 499, 1_000_001] {
                let response = try await client.rpc("billing.topUp", ["credits": .integer(credits)], token: admin)
                #expect(response.errorCode == -32602)
                #expect(response["error"]?["data"]?["field"] == "credits")
                #expect(response.errorMessage.contains("between 500 and 1000000"))
            }
            let member = try await client.rpc("billing.topUp", ["credits": 500], token: try await server.token(.member, tenant: tenant))
            #expect(member.errorCode == -32003)
            let emptyKey = try await client.rpc("billing.topUp", ["credits": 500, "idempotencyKey": ""], token: admin)
            #expect(emptyKey["error"]?["data"]?["field"] == "idempotencyKey")
            #expect(await server.standIn?.count(of: "checkout.session") == 0)
        }
    }

    @Test func tooManySessionsAMinuteAreRefused() async throws {
        try await TestServer.run(extra: ["BILLING_CHECKOUT_SESSIONS_PER_MINUTE": "2"], stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            for _ in 0..<2 {
                #expect(try await client.rpc("billing.topUp", ["credits": 500], token: admin)["result"] != nil)
            }
            let third = try await client.rpc("billing.topUp", ["credits": 500], token: admin)
            #expect(third.errorCode == -32029)
            #expect(third.errorName == "TOO_MANY_REQUESTS")
        }
    }
}

@Suite struct SubscriptionCheckoutTests {
    @Test func aliasesMapToTheConfiguredPriceAndTheSessionCarriesTheTenant() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let response = try await client.rpc("billing.checkout", ["plan": "archon", "interval": "year", "seats": 5], token: admin)
            let sessionID = try #require(response["result"]?["sessionId"]?.stringValue)
            let session = try await #require(server.stripe).retrieveCheckoutSession(sessionID)
            #expect(session.mode == "subscription")
            // Team has a 14-day trial: nothing is due today, then price_team_year x 5 seats.
            #expect(session.amountTotal == 0)
            #expect(await server.standIn?.checkoutView(sessionID)?.recurringTotal == 15000 * 5)
            #expect(session.metadata?["plan"] == "team")
            #expect(session.metadata?["purpose"] == "subscription")
            #expect(session.metadata?["tenant_id"] == tenant.uuidString.lowercased())

            // Paying on the hosted page creates the subscription with the tenant in its metadata and the trial.
            let standIn = try #require(server.standIn)
            guard case .redirect(let url) = await standIn.complete(sessionID, outcome: .pay) else {
                Issue.record("paying did not redirect"); return
            }
            #expect(url == "\(TestServer.publicURL)/billing?checkout=\(sessionID)")
            let paid = try await #require(server.stripe).retrieveCheckoutSession(sessionID)
            let subscription = try await #require(server.stripe).retrieveSubscription(try #require(paid.subscription?.id))
            #expect(subscription.metadata?["tenant_id"] == tenant.uuidString.lowercased())
            #expect(subscription.status == "trialing")
            #expect(subscription.items.data.first?.priceID == "price_team_year")
            // The plan is not changed by the API: only a confirmed webhook does that.
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["plan"] == "free")
        }
    }

    @Test func aDoubleClickBuysOneSubscription() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            async let first = client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            async let second = client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            let (a, b) = try await (first, second)
            #expect(a["result"]?["sessionId"] != nil)
            #expect(a["result"] == b["result"])
            #expect(await server.standIn?.count(of: "checkout.session") == 1)
        }
    }

    @Test func anotherChoiceReplacesTheOpenSessionSoOnlyOneCanBePaid() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let pro = try await client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            let proSession = try #require(pro["result"]?["sessionId"]?.stringValue)
            let team = try await client.rpc("billing.checkout", ["plan": "team", "seats": 4], token: admin)
            let teamSession = try #require(team["result"]?["sessionId"]?.stringValue)
            #expect(teamSession != proSession)
            let stripe = try #require(server.stripe)
            #expect(try await stripe.retrieveCheckoutSession(proSession).status == "expired")
            #expect(try await stripe.retrieveCheckoutSession(teamSession).metadata?["plan"] == "team")
            // Paid before it could be replaced: nothing new is opened.
            _ = await server.standIn?.complete(teamSession, outcome: .pay)
            let late = try await client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            #expect(late.errorCode == -32009)
            #expect(late.errorMessage.contains("just completed"))
        }
    }

    @Test func refusalsNameTheProblem() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let cases: [([String: JSONValue], String, String)] = [
                (["plan": "pro", "priceId": "price_cheap"], "priceId", "unknown param"),
                (["plan": "gold"], "plan", "use one of: free, pro, team"),
                (["plan": "free"], "plan", "choose a paid plan"),
                (["plan": "team", "seats": 2], "seats", "between 3 and 50"),
                (["plan": "team", "seats": 51], "seats", "between 3 and 50"),
                (["plan": "pro", "seats": 2], "seats", "exactly 1"),
                (["plan": "pro", "interval": "week"], "interval", "month or year"),
            ]
            for (params, field, words) in cases {
                let response = try await client.rpc("billing.checkout", params, token: admin)
                #expect(response.errorCode == -32602, "\(params)")
                #expect(response["error"]?["data"]?["field"] == .string(field), "\(params): \(response)")
                #expect(response.errorMessage.contains(words), "\(response.errorMessage)")
            }
            let member = try await client.rpc("billing.checkout", ["plan": "pro"], token: try await server.token(.member, tenant: tenant))
            #expect(member.errorCode == -32003)
            #expect(await server.standIn?.count(of: "checkout.session") == 0)
        }
    }

    @Test func aTenantWithALiveSubscriptionIsSentToChangePlanOrThePortal() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            try await server.database.withAppClient { db in
                try await db.withTenant(tenant, operation: "seed") { connection in
                    try await connection.query("""
                        INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, plan, billing_interval, seats, status)
                        VALUES (\(tenant), 'sub_live', 'pro', 'month', 1, 'active')
                        """, logger: db.logger)
                }
            }
            let response = try await client.rpc("billing.checkout", ["plan": "team"], token: try await server.token(.owner, tenant: tenant))
            #expect(response.errorCode == -32009)
            #expect(response.errorMessage.contains("billing.changePlan"))
            #expect(response.errorMessage.contains("billing.portal"))
        }
    }
}

@Suite struct CustomerAndPortalTests {
    @Test func provisioningCreatesTheStripeCustomerWithTheTenant() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let id = UUID()
            let response = try await client.rpc(
                "tenants.provision", ["tenantId": .string(id.uuidString), "name": "Acme", "email": "billing@acme.example"],
                token: try await server.token(.service))
            let customerID = try #require(response["result"]?["stripeCustomerId"]?.stringValue)
            let customer = try await #require(server.stripe).retrieveCustomer(customerID)
            #expect(customer.metadata?["tenant_id"] == id.uuidString.lowercased())
            #expect(customer.email == "billing@acme.example")
            // Repeating the provisioning creates no second customer.
            _ = try await client.rpc(
                "tenants.provision", ["tenantId": .string(id.uuidString), "name": "Acme", "email": "billing@acme.example"],
                token: try await server.token(.service))
            #expect(await server.standIn?.count(of: "customer") == 1)
        }
    }

    @Test func whenStripeIsDownTheTenantStillWorksAndMoneyPathsSaySo() async throws {
        let down = ["STRIPE_SECRET_KEY": "sk_test_down", "STRIPE_API_BASE": "http://127.0.0.1:1",
                    "BILLING_STRIPE_MAX_ATTEMPTS": "2", "BILLING_STRIPE_RETRY_INITIAL_MS": "1", "BILLING_STRIPE_TIMEOUT_MS": "300"]
        try await TestServer.run(extra: down) { client, server in
            let provisioned = try await client.rpc(
                "tenants.provision", ["name": "Acme", "email": "billing@acme.example"], token: try await server.token(.service))
            #expect(provisioned["result"]?["stripeCustomerId"] == .null)
            let tenant = try #require(provisioned["result"]?["tenantId"]?.stringValue.flatMap(UUID.init(uuidString:)))
            let admin = try await server.token(.admin, tenant: tenant)
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["plan"] == "free")

            let topUp = try await client.rpc("billing.topUp", ["credits": 500, "idempotencyKey": "k1"], token: admin)
            #expect(topUp.errorCode == -32603)
            #expect(topUp.errorName == "SERVICE_UNAVAILABLE")
            #expect(!topUp.errorMessage.contains("sk_test_down"))
            // Nothing half-done: no top-up or session was recorded, so a retry starts clean.
            let recorded = try await server.database.withAppClient { db in
                try await db.withTenant(tenant, operation: "probe") { connection in
                    try await connection.first(
                        "SELECT (SELECT count(*) FROM billing.top_ups) + (SELECT count(*) FROM billing.checkout_sessions)",
                        as: Int.self, logger: db.logger)
                }
            }
            #expect(recorded == 0)
        }
    }

    /// Stripe's text for a refusal of our own request (ids, parameter names) stays on the server: the client gets the
    /// code and Stripe's request id. A card error's text, written for the customer, is passed on.
    @Test func stripesRefusalTextIsNotPassedToClients() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            await server.standIn!.inject(StandInFault(kind: .invalidParam, path: "/v1/checkout/sessions"))
            let refused = try await client.rpc("billing.topUp", ["credits": 500], token: admin)
            #expect(refused.errorName == "PRECONDITION_FAILED", "\(refused)")
            #expect(!refused.errorMessage.contains("injected"), "\(refused)")
            #expect(refused.errorMessage.contains("parameter_invalid, Stripe request req_"), "\(refused)")
            await server.standIn!.inject(StandInFault(kind: .cardDeclined, path: "/v1/checkout/sessions"))
            let declined = try await client.rpc("billing.topUp", ["credits": 500], token: admin)
            #expect(declined.errorMessage.contains("Your card was declined."), "\(declined)")
        }
    }

    @Test func withoutStripeConfiguredMoneyPathsSaySo() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let response = try await client.rpc("billing.topUp", ["credits": 500], token: try await server.token(.admin, tenant: tenant))
            #expect(response.errorCode == -32012)
            #expect(response.errorMessage.contains("STRIPE_SECRET_KEY"))
        }
    }

    @Test func thePortalOpensForTheTenantAndRefusesForeignReturnURLs() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let portal = try await client.rpc("billing.portal", token: admin)
            #expect(portal["result"]?["url"]?.stringValue?.hasPrefix("http://stand-in.test/portal/bps_") == true)
            let own = try await client.rpc("billing.portal", ["returnUrl": .string("\(TestServer.publicURL)/settings")], token: admin)
            #expect(own["result"]?["url"] != nil)
            for foreign in ["https://evil.example/phish", "http://billing.test:9999/billing", "javascript:alert(1)"] {
                let response = try await client.rpc("billing.portal", ["returnUrl": .string(foreign)], token: admin)
                #expect(response.errorCode == -32602, "\(foreign)")
                #expect(response["error"]?["data"]?["field"] == "returnUrl")
            }
        }
    }
}
