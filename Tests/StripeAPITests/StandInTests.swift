import AsyncHTTPClient
import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import NIOCore
import BillingDevSupport
import StripeAPI
import StripeStandIn
import Testing

/// What a webhook endpoint received: every delivery's signature header and body.
actor WebhookInbox {
    var deliveries: [(signature: String?, body: Data)] = []
    var failuresToAnswer: Int

    init(failFirst: Int = 0) { failuresToAnswer = failFirst }

    func receive(signature: String?, body: Data) -> Bool {
        deliveries.append((signature, body))
        if failuresToAnswer > 0 {
            failuresToAnswer -= 1
            return false
        }
        return true
    }

    /// Types of the events whose delivery was answered 2xx, in arrival order.
    func eventTypes() -> [String] {
        deliveries.compactMap { (try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any])?["type"] as? String }
    }

    /// The metadata of the object of the first event of `type`.
    func metadata(ofFirst type: String) -> [String: String]? {
        let event = deliveries.compactMap { try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any] }
            .first { $0["type"] as? String == type }
        return ((event?["data"] as? [String: Any])?["object"] as? [String: Any])?["metadata"] as? [String: String]
    }
}

enum StandInHarness {
    static let secret = "whsec_stand_in_tests"
    static let prices = [
        StandInPrice(id: "price_team_month", unitAmount: 1500, currency: "usd", interval: "month", productName: "Team"),
        StandInPrice(id: "price_pro_month", unitAmount: 1900, currency: "usd", interval: "month", productName: "Pro"),
    ]

    /// A webhook endpoint and a stand-in delivering to it, both on real ports; `body` gets a client for the stand-in.
    static func run(
        failFirstDeliveries: Int = 0, retry: RetryPolicy = RetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
        timeout: Duration = .seconds(5),
        _ body: @escaping @Sendable (StripeClient, StandInState, WebhookInbox, any TestClientProtocol) async throws -> Void
    ) async throws {
        let inbox = WebhookInbox(failFirst: failFirstDeliveries)
        let receiver = Router()
        receiver.post("/webhooks/stripe") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let ok = await inbox.receive(signature: request.headers[.init("Stripe-Signature")!], body: Data(bytes.readableBytesView))
            return Response(status: ok ? .ok : .serviceUnavailable)
        }
        let receiverApp = Application(router: receiver, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await receiverApp.test(.live) { receiverClient in
            let webhookURL = "http://127.0.0.1:\(receiverClient.port!)/webhooks/stripe"
            let state = StandInState(configuration: StandInConfiguration(
                publicURL: "http://stand-in.invalid", webhookURL: webhookURL, webhookSecret: secret, prices: prices,
                webhookRetryInitial: .milliseconds(5), webhookMaxAttempts: 6, clock: Date.init))
            try await buildStandInApplication(state: state, port: 0).test(.live) { standIn in
                let client = StripeClient(configuration: StripeConfiguration(
                    apiBase: "http://127.0.0.1:\(standIn.port!)", secretKey: "sk_test_stand_in", timeout: timeout, retry: retry))
                try await body(client, state, inbox, standIn)
            }
        }
    }

    /// Waits (polling, up to 15 s: webhooks go over real HTTP from detached tasks) until `condition` holds.
    static func eventually(_ condition: @Sendable () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return await condition()
    }
}

@Suite struct StandInIdempotencyAndFaultTests {
    @Test func theSameKeyCreatesOnceAndOtherParamsAreRefused() async throws {
        try await StandInHarness.run { client, state, _, _ in
            let first = try await client.createCustomer(email: "a@acme.example", name: "A", tenantID: "t1", idempotencyKey: "customer:t1")
            let again = try await client.createCustomer(email: "a@acme.example", name: "A", tenantID: "t1", idempotencyKey: "customer:t1")
            #expect(first.id == again.id)
            #expect(await state.count(of: "customer") == 1)
            do {
                _ = try await client.createCustomer(email: "other@acme.example", name: "A", tenantID: "t1", idempotencyKey: "customer:t1")
                Issue.record("a reused key with other params was accepted")
            } catch {
                guard case .refused(let refusal) = error as? StripeError else { Issue.record("\(error)"); return }
                #expect(refusal.type == "idempotency_error")
                #expect(refusal.httpStatus == 400)
            }
        }
    }

    @Test func rateLimitedThenSuccessCreatesOne() async throws {
        try await StandInHarness.run { client, state, _, _ in
            await state.inject(StandInFault(kind: .rateLimited, path: "/v1/customers", count: 1))
            let customer = try await client.createCustomer(email: "b@acme.example", name: "B", tenantID: "t2", idempotencyKey: "customer:t2")
            #expect(customer.id.hasPrefix("cus_"))
            #expect(await state.count(of: "customer") == 1)
        }
    }

    @Test func errorBeforeExecutionThenSuccessCreatesOne() async throws {
        try await StandInHarness.run { client, state, _, _ in
            await state.inject(StandInFault(kind: .errorBeforeExecution, path: "/v1/customers", count: 2))
            let customer = try await client.createCustomer(email: "c@acme.example", name: "C", tenantID: "t3", idempotencyKey: "customer:t3")
            #expect(customer.email == "c@acme.example")
            #expect(await state.count(of: "customer") == 1)
        }
    }

    @Test func errorAfterExecutionIsReplayedAndIndeterminate() async throws {
        try await StandInHarness.run { client, state, _, _ in
            await state.inject(StandInFault(kind: .errorAfterExecution, path: "/v1/customers", count: 1))
            do {
                _ = try await client.createCustomer(email: "d@acme.example", name: "D", tenantID: "t4", idempotencyKey: "customer:t4")
                Issue.record("a replayed 500 was reported as success")
            } catch {
                guard case .indeterminate = error as? StripeError else { Issue.record("expected indeterminate, got \(error)"); return }
            }
            // Executed once: the object exists, and the key keeps answering with the stored 500.
            #expect(await state.count(of: "customer") == 1)
        }
    }

    @Test func declinesAndInvalidParamsAreRefusals() async throws {
        try await StandInHarness.run { client, state, _, _ in
            await state.inject(StandInFault(kind: .cardDeclined, path: "/v1/customers", count: 1))
            do {
                _ = try await client.createCustomer(email: "e@acme.example", name: "E", tenantID: "t5", idempotencyKey: UUID().uuidString)
                Issue.record("an injected decline succeeded")
            } catch {
                guard case .refused(let refusal) = error as? StripeError else { Issue.record("\(error)"); return }
                #expect(refusal.httpStatus == 402)
                #expect(refusal.code == "card_declined")
                #expect(refusal.declineCode == "generic_decline")
                #expect(refusal.requestID?.hasPrefix("req_") == true)
            }
            do {
                _ = try await client.createCheckoutSession(["mode": "payment", "success_url": "https://x.example"], idempotencyKey: UUID().uuidString)
                Issue.record("a payment session without line items was created")
            } catch {
                guard case .refused(let refusal) = error as? StripeError else { Issue.record("\(error)"); return }
                #expect(refusal.param == "line_items")
                #expect(refusal.code == "parameter_missing")
            }
        }
    }

    @Test func aTimeoutLeavesAPostIndeterminate() async throws {
        try await StandInHarness.run(retry: RetryPolicy(maxAttempts: 1), timeout: .milliseconds(150)) { client, state, _, _ in
            await state.inject(StandInFault(kind: .delay, path: "/v1/customers", count: 1, delayMilliseconds: 600))
            do {
                _ = try await client.createCustomer(email: "f@acme.example", name: "F", tenantID: "t6", idempotencyKey: "customer:t6")
                Issue.record("a timed-out call succeeded")
            } catch {
                guard case .indeterminate = error as? StripeError else { Issue.record("expected indeterminate, got \(error)"); return }
            }
        }
    }
}

@Suite struct StandInCheckoutTests {
    @Test func payingATopUpSessionCompletesItAndSendsSignedEvents() async throws {
        try await StandInHarness.run { client, state, inbox, standIn in
            let customer = try await client.createCustomer(email: "g@acme.example", name: "G", tenantID: "t7", idempotencyKey: "customer:t7")
            let session = try await client.createCheckoutSession([
                "mode": "payment", "customer": .string(customer.id), "client_reference_id": "t7",
                "success_url": "https://billing.example/billing?checkout={CHECKOUT_SESSION_ID}",
                "cancel_url": "https://billing.example/billing?checkout={CHECKOUT_SESSION_ID}",
                "line_items": [["price_data": ["currency": "usd", "unit_amount": 1, "product_data": ["name": "Credits"]], "quantity": 500]],
                "metadata": ["tenant_id": "t7", "purpose": "credit_topup", "credits": "500", "topup_id": "tu_1"],
                "payment_intent_data": ["metadata": ["tenant_id": "t7", "purpose": "credit_topup", "credits": "500", "topup_id": "tu_1"]],
            ], idempotencyKey: "topup:t7:tu_1")
            #expect(session.status == "open")
            #expect(session.amountTotal == 500)
            let path = try #require(session.url.flatMap { URL(string: $0)?.path })
            #expect(path == "/checkout/\(session.id)")

            let page = try await standIn.execute(uri: path, method: .get)
            #expect(String(buffer: page.body).contains("id=\"pay\""))
            let paid = try await standIn.execute(
                uri: path, method: .post, headers: [.contentType: "application/x-www-form-urlencoded"], body: ByteBuffer(string: "outcome=pay"))
            #expect(paid.status == .seeOther)
            #expect(paid.headers[.location] == "https://billing.example/billing?checkout=\(session.id)")

            let completed = try await client.retrieveCheckoutSession(session.id)
            #expect(completed.status == "complete")
            #expect(completed.paymentStatus == "paid")
            #expect(completed.paymentIntent != nil)

            // Each event is delivered on its own (as Stripe does), so they arrive in any order.
            let expected: Set = ["checkout.session.completed", "charge.succeeded", "payment_intent.succeeded"]
            #expect(try await StandInHarness.eventually { expected.isSubset(of: Set(await inbox.eventTypes())) })
            for delivery in await inbox.deliveries {
                try WebhookSignature.verify(header: delivery.signature, body: delivery.body, secrets: [StandInHarness.secret],
                                            now: Date(), tolerance: .seconds(300))
            }
            let metadata = await inbox.metadata(ofFirst: "payment_intent.succeeded")
            #expect(metadata?["purpose"] == "credit_topup")
            #expect(metadata?["credits"] == "500")
            // The events are listed by the API too.
            let listed = try await client.listEvents(limit: 100)
            #expect(listed.events.contains { $0.type == "checkout.session.completed" })
        }
    }

    @Test func aSubscriptionSessionCreatesTheSubscriptionWithItsMetadata() async throws {
        try await StandInHarness.run { client, _, inbox, standIn in
            let session = try await client.createCheckoutSession([
                "mode": "subscription", "client_reference_id": "t8",
                "success_url": "https://billing.example/billing?checkout={CHECKOUT_SESSION_ID}",
                "line_items": [["price": "price_team_month", "quantity": 4]],
                "metadata": ["tenant_id": "t8", "plan": "team", "purpose": "subscription"],
                "subscription_data": ["metadata": ["tenant_id": "t8", "plan": "team"], "trial_period_days": 14],
            ], idempotencyKey: "checkout:t8")
            // A 14-day trial: nothing is due today, as Stripe's session says; the page tells what comes after.
            #expect(session.amountTotal == 0)
            let page = String(buffer: try await standIn.execute(uri: "/checkout/\(session.id)", method: .get).body)
            #expect(page.contains("Free for 14 days, then 60.00 USD per period."), "\(page)")
            _ = try await standIn.execute(
                uri: "/checkout/\(session.id)", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                body: ByteBuffer(string: "outcome=pay"))
            let completed = try await client.retrieveCheckoutSession(session.id)
            let subscriptionID = try #require(completed.subscription?.id)
            let subscription = try await client.retrieveSubscription(subscriptionID)
            #expect(subscription.status == "trialing")
            #expect(completed.paymentStatus == "no_payment_required")
            #expect(subscription.metadata?["tenant_id"] == "t8")
            #expect(subscription.items.data.first?.priceID == "price_team_month")
            #expect(subscription.items.data.first?.quantity == 4)
            #expect(subscription.periodEnd != nil)
            #expect(try await StandInHarness.eventually {
                Set(["invoice.paid", "customer.subscription.created"]).isSubset(of: Set(await inbox.eventTypes()))
            })
            // Its first invoice is for 0.00, paid with no payment: no card was charged.
            #expect(!(await inbox.eventTypes()).contains("charge.succeeded"))
            #expect(!(await inbox.eventTypes()).contains("payment_intent.succeeded"))

            // Quantity changes and cancellation go through the same API.
            let item = try #require(subscription.items.data.first)
            let updated = try await client.updateSubscription(subscriptionID, [
                "items": [["id": .string(item.id), "quantity": 6]], "proration_behavior": "create_prorations",
            ], idempotencyKey: "seats:\(subscriptionID):6")
            #expect(updated.items.data.first?.quantity == 6)
            let switched = try await client.updateSubscription(subscriptionID, [
                "items": [["id": .string(item.id), "price": "price_pro_month"]],
            ], idempotencyKey: UUID().uuidString)
            #expect(switched.items.data.first?.priceID == "price_pro_month")
            #expect(try await client.cancelSubscription(subscriptionID).status == "canceled")
        }
    }

    @Test func declineAndThreeDSecureAreShownAndAuthenticationPays() async throws {
        try await StandInHarness.run { client, _, inbox, standIn in
            let session = try await client.createCheckoutSession([
                "mode": "payment", "success_url": "https://billing.example/done",
                "line_items": [["price_data": ["currency": "usd", "unit_amount": 100, "product_data": ["name": "Credits"]], "quantity": 1]],
            ], idempotencyKey: UUID().uuidString)
            let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            let declined = try await standIn.execute(uri: "/checkout/\(session.id)", method: .post, headers: form, body: ByteBuffer(string: "outcome=decline"))
            #expect(String(buffer: declined.body).contains("declined"))
            #expect(try await client.retrieveCheckoutSession(session.id).status == "open")
            #expect(try await StandInHarness.eventually { await inbox.eventTypes().contains("payment_intent.payment_failed") })

            let challenge = try await standIn.execute(uri: "/checkout/\(session.id)", method: .post, headers: form, body: ByteBuffer(string: "outcome=authenticate"))
            #expect(String(buffer: challenge.body).contains("complete-authentication"))
            let paid = try await standIn.execute(uri: "/checkout/\(session.id)", method: .post, headers: form, body: ByteBuffer(string: "outcome=authenticated"))
            #expect(paid.status == .seeOther)
            #expect(try await client.retrieveCheckoutSession(session.id).status == "complete")
        }
    }

    @Test func deliveriesAreRetriedWhileTheEndpointIsDown() async throws {
        try await StandInHarness.run(failFirstDeliveries: 3) { client, state, inbox, _ in
            _ = try await client.createCustomer(email: "h@acme.example", name: "H", tenantID: "t9", idempotencyKey: UUID().uuidString)
            #expect(try await StandInHarness.eventually { await inbox.deliveries.count >= 4 })
            let ids = await inbox.deliveries.compactMap { (try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any])?["id"] as? String }
            #expect(Set(ids).count == 1)
            let id = try #require(ids.first)
            #expect(try await StandInHarness.eventually { await state.deliveries(of: id) == 1 })
        }
    }

    @Test func heldWebhooksWaitUntilReleasedOverTheControlEndpoints() async throws {
        try await StandInHarness.run { client, state, inbox, standIn in
            _ = try await client.createCustomer(email: "a@acme.example", name: "A", tenantID: "t1", idempotencyKey: UUID().uuidString)
            #expect(try await StandInHarness.eventually { await inbox.eventTypes().count == 1 })
            #expect(try await standIn.execute(uri: "/_stand-in/webhooks/hold", method: .post).status == .noContent)
            _ = try await client.createCustomer(email: "b@acme.example", name: "B", tenantID: "t2", idempotencyKey: UUID().uuidString)
            #expect(await state.heldWebhookCount() == 1)
            try await Task.sleep(for: .milliseconds(300))
            #expect(await inbox.eventTypes().count == 1, "a held webhook was delivered")
            #expect(try await standIn.execute(uri: "/_stand-in/webhooks/release", method: .post).status == .noContent)
            #expect(try await StandInHarness.eventually { await inbox.eventTypes().count == 2 })
            #expect(await state.heldWebhookCount() == 0)
        }
    }

    /// A page on another site cannot reach the control endpoints (a form posting to them, say).
    @Test func theControlEndpointsRefuseRequestsFromOtherSites() async throws {
        try await StandInHarness.run { client, state, _, standIn in
            for headers in [[HTTPField.Name.origin: "https://evil.example"], [HTTPField.Name("Sec-Fetch-Site")!: "cross-site"]] as [HTTPFields] {
                #expect(try await standIn.execute(uri: "/_stand-in/webhooks/hold", method: .post, headers: headers).status == .forbidden)
            }
            _ = try await client.createCustomer(email: "c@acme.example", name: "C", tenantID: "t3", idempotencyKey: UUID().uuidString)
            #expect(await state.heldWebhookCount() == 0)
            // A tool's request (no browser headers) goes through.
            #expect(try await standIn.execute(uri: "/_stand-in/webhooks/hold", method: .post).status == .noContent)
        }
    }

    @Test func expiringASessionEndsIt() async throws {
        try await StandInHarness.run { client, _, inbox, _ in
            let session = try await client.createCheckoutSession([
                "mode": "payment", "success_url": "https://billing.example/done",
                "line_items": [["price_data": ["currency": "usd", "unit_amount": 100, "product_data": ["name": "Credits"]], "quantity": 1]],
            ], idempotencyKey: UUID().uuidString)
            let expired = try await client.expireCheckoutSession(session.id, idempotencyKey: UUID().uuidString)
            #expect(expired.status == "expired")
            #expect(try await StandInHarness.eventually { await inbox.eventTypes().contains("checkout.session.expired") })
        }
    }
}

/// Stripe's official Python library speaks to the stand-in and parses what it answers.
@Suite struct OfficialLibraryTests {
    @Test func stripePythonCreatesACustomerAndACheckoutSession() async throws {
        guard let python = ProcessInfo.processInfo.environment["BILLING_TEST_PYTHON"], !python.isEmpty else {
            throw Localstripe.LocalstripeMissing()
        }
        try await StandInHarness.run { _, _, _, standIn in
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/official_client.py")
            let run = try await ProgramRun.run([python, script.path, "http://127.0.0.1:\(standIn.port!)"])
            let data = Data(run.output.utf8)
            #expect(run.succeeded, "\(run.errors)")
            let parsed = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect((parsed["customer"] as? String)?.hasPrefix("cus_") == true)
            #expect(parsed["customer_object"] as? String == "customer")
            #expect(parsed["tenant"] as? String == "t-official")
            #expect((parsed["session"] as? String)?.hasPrefix("cs_test_") == true)
            #expect(parsed["session_object"] as? String == "checkout.session")
            // The session has a 14-day trial: nothing is due today.
            #expect(parsed["amount_total"] as? Int == 0)
            #expect(parsed["fetched_status"] as? String == "open")
            #expect(parsed["fetched_customer"] as? String == parsed["customer"] as? String)
            #expect((parsed["url"] as? String)?.contains("/checkout/") == true)
        }
    }
}

@Suite struct StandInPortalTests {
    @Test func thePortalChangesSeatsSwitchesPlanAndCancelsWithEvents() async throws {
        try await StandInHarness.run { client, _, inbox, standIn in
            let customer = try await client.createCustomer(email: "p@acme.example", name: "P", tenantID: "tp", idempotencyKey: UUID().uuidString)
            let session = try await client.createCheckoutSession([
                "mode": "subscription", "customer": .string(customer.id), "success_url": "https://billing.example/done",
                "line_items": [["price": "price_team_month", "quantity": 3]],
                "subscription_data": ["metadata": ["tenant_id": "tp"]],
            ], idempotencyKey: UUID().uuidString)
            let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            _ = try await standIn.execute(uri: "/checkout/\(session.id)", method: .post, headers: form, body: ByteBuffer(string: "outcome=pay"))
            let subscriptionID = try #require(try await client.retrieveCheckoutSession(session.id).subscription?.id)

            let portal = try await client.createPortalSession(customer: customer.id, returnURL: "https://billing.example/billing", idempotencyKey: UUID().uuidString)
            let path = try #require(URL(string: portal.url)?.path)
            let page = String(buffer: try await standIn.execute(uri: path, method: .get).body)
            #expect(page.contains("id=\"change-seats\""))
            #expect(page.contains("id=\"switch-plan\""))
            #expect(page.contains("https://billing.example/billing"))

            func act(_ body: String) async throws -> String {
                String(buffer: try await standIn.execute(uri: path, method: .post, headers: form, body: ByteBuffer(string: body)).body)
            }
            #expect(try await act("action=seats&subscription=\(subscriptionID)&value=7").contains("Saved."))
            #expect(try await client.retrieveSubscription(subscriptionID).items.data.first?.quantity == 7)
            #expect(try await act("action=seats&subscription=\(subscriptionID)&value=0").contains("1 or more"))
            #expect(try await act("action=price&subscription=\(subscriptionID)&value=price_pro_month").contains("Saved."))
            #expect(try await client.retrieveSubscription(subscriptionID).items.data.first?.priceID == "price_pro_month")
            #expect(try await act("action=cancel&subscription=\(subscriptionID)").contains("cancels at period end"))
            #expect(try await client.retrieveSubscription(subscriptionID).cancelAtPeriodEnd == true)
            #expect(try await StandInHarness.eventually {
                await inbox.eventTypes().filter { $0 == "customer.subscription.updated" }.count >= 3
            })
        }
    }
}

@Suite struct StandInPaymentTests {
    func customer(_ client: StripeClient) async throws -> String {
        try await client.createCustomer(email: "pay@acme.example", name: "Pay", tenantID: "tq", idempotencyKey: UUID().uuidString).id
    }

    @Test func offSessionPaymentsSucceedDeclineOrNeedAuthentication() async throws {
        try await StandInHarness.run { client, _, inbox, _ in
            let customer = try await customer(client)
            func charge(_ method: String, key: String) async throws(StripeError) -> PaymentIntent {
                try await client.createPaymentIntent([
                    "amount": 2500, "currency": "usd", "customer": .string(customer), "payment_method": .string(method),
                    "confirm": true, "off_session": true, "metadata": ["invoice_id": "inv-1", "tenant_id": "tq"],
                    "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
                ], idempotencyKey: key)
            }
            let paid = try await charge("pm_card_visa", key: "invoice:inv-1:attempt:1")
            #expect(paid.status == "succeeded")
            #expect(paid.latestCharge?.id.hasPrefix("ch_") == true)
            #expect(paid.metadata?["invoice_id"] == "inv-1")
            // The same attempt's key replays the same intent: no second charge.
            #expect(try await charge("pm_card_visa", key: "invoice:inv-1:attempt:1").id == paid.id)

            do {
                _ = try await charge("pm_card_chargeCustomerFail", key: "invoice:inv-2:attempt:1")
                Issue.record("a declining card was charged")
            } catch {
                guard case .refused(let refusal) = error as? StripeError else { Issue.record("\(error)"); return }
                #expect(refusal.httpStatus == 402)
                #expect(refusal.code == "card_declined")
            }
            do {
                _ = try await charge("pm_card_authenticationRequired", key: "invoice:inv-3:attempt:1")
                Issue.record("a card needing authentication was charged off-session")
            } catch {
                guard case .refused(let refusal) = error as? StripeError else { Issue.record("\(error)"); return }
                #expect(refusal.code == "authentication_required")
            }
            #expect(try await StandInHarness.eventually {
                // Off-session, a card that needs authentication fails like a decline, as at Stripe.
                let types = await inbox.eventTypes()
                return types.filter { $0 == "payment_intent.payment_failed" }.count == 2 && !types.contains("payment_intent.requires_action")
            })
        }
    }

    @Test func refundsNeverExceedWhatRemains() async throws {
        try await StandInHarness.run { client, _, inbox, _ in
            let customer = try await customer(client)
            let intent = try await client.createPaymentIntent([
                "amount": 1000, "currency": "usd", "customer": .string(customer), "payment_method": "pm_card_visa", "confirm": true,
                "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
            ], idempotencyKey: UUID().uuidString)
            let partial = try await client.createRefund(["payment_intent": .string(intent.id), "amount": 400], idempotencyKey: "refund:1")
            #expect(partial.amount == 400)
            #expect(partial.charge?.id == intent.latestCharge?.id)
            do {
                _ = try await client.createRefund(["payment_intent": .string(intent.id), "amount": 700], idempotencyKey: "refund:2")
                Issue.record("an over-refund was accepted")
            } catch {
                guard case .refused(let refusal) = error as? StripeError else { Issue.record("\(error)"); return }
                #expect(refusal.param == "amount")
                #expect(refusal.message?.contains("600") == true)
            }
            let rest = try await client.createRefund(["payment_intent": .string(intent.id)], idempotencyKey: "refund:3")
            #expect(rest.amount == 600)
            #expect(try await StandInHarness.eventually { await inbox.eventTypes().filter { $0 == "charge.refunded" }.count == 2 })
        }
    }

    /// A refund made to fail over the control endpoint, as Stripe's test card 4000 0000 0000 5126 does: failed with
    /// its reason, the charge refundable again, and the events Stripe sends.
    @Test func aRefundCanBeMadeToFailAndThePaymentRefundedAgain() async throws {
        try await StandInHarness.run { client, _, inbox, standIn in
            let customer = try await customer(client)
            let intent = try await client.createPaymentIntent([
                "amount": 1000, "currency": "usd", "customer": .string(customer), "payment_method": "pm_card_visa", "confirm": true,
                "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
            ], idempotencyKey: UUID().uuidString)
            let refund = try await client.createRefund(["payment_intent": .string(intent.id)], idempotencyKey: UUID().uuidString)
            #expect(refund.amount == 1000)

            var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            headers[.accept] = "application/json"
            let failed = try await standIn.execute(
                uri: "/_stand-in/refunds/\(refund.id)/fail", method: .post, headers: headers, body: ByteBuffer(string: "failure_reason=lost_or_stolen_card"))
            #expect(failed.status == .ok)
            let body = try JSONDecoder().decode(Refund.self, from: Data(buffer: failed.body))
            #expect(body.status == "failed")
            #expect(body.failureReason == "lost_or_stolen_card")
            let again = try await standIn.execute(uri: "/_stand-in/refunds/\(refund.id)/fail", method: .post)
            #expect(again.status == .badRequest)
            #expect(String(buffer: again.body).contains("only a pending or succeeded refund can fail"))
            #expect(try await standIn.execute(uri: "/_stand-in/refunds/re_nope/fail", method: .post).status == .badRequest)

            // The money came back to the charge: it can be refunded in full again.
            let second = try await client.createRefund(["payment_intent": .string(intent.id)], idempotencyKey: UUID().uuidString)
            #expect(second.amount == 1000)
            #expect(try await StandInHarness.eventually {
                let types = await inbox.eventTypes()
                return types.contains("refund.failed") && types.contains("charge.refund.updated") && types.filter { $0 == "refund.created" }.count == 2
            })
        }
    }

    /// The hosted page writes amounts in the currency's own minor units: yen are whole.
    @Test func theCheckoutPageWritesZeroDecimalAmountsWhole() async throws {
        try await StandInHarness.run { client, _, _, standIn in
            let session = try await client.createCheckoutSession([
                "mode": "payment", "success_url": "https://billing.example/done",
                "line_items": [["price_data": ["currency": "jpy", "unit_amount": 500, "product_data": ["name": "Credits"]], "quantity": 1]],
            ], idempotencyKey: UUID().uuidString)
            let page = String(buffer: try await standIn.execute(uri: "/checkout/\(session.id)", method: .get).body)
            #expect(page.contains("500 JPY"), "\(page)")
        }
    }
}
