import AsyncHTTPClient
import BillingDevSupport
import Foundation
import NIOCore
import NIOHTTP1
import StripeAPI
import StripeStandIn
import Testing

/// A raw call to the stand-in, without the client's retries: its status and JSON body.
struct RawCall {
    let base: String

    func send(_ method: HTTPMethod, _ path: String, _ body: String = "", key: String? = nil, version: String? = nil,
              query: String = "") async throws -> (status: Int, json: [String: Any]) {
        var request = HTTPClientRequest(url: base + path + (query.isEmpty ? "" : "?" + query))
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer sk_test_raw")
        if let key { request.headers.add(name: "Idempotency-Key", value: key) }
        if let version { request.headers.add(name: "Stripe-Version", value: version) }
        if method == .POST {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        let json = (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
        return (Int(response.status.code), json)
    }
}

extension Dictionary where Key == String, Value == Any {
    var error: [String: Any] { self["error"] as? [String: Any] ?? [:] }
}

@Suite struct StandInFidelityTests {

    /// The request `billing.setupPaymentMethod` used to send: endive removed `payment_method_types` from Checkout
    /// Session create, so Stripe refuses it; setup mode also needs `currency` unless payment method types are allowed.
    @Test func theOldSetupModeRequestIsRefusedAsStripeRefusesIt() async throws {
        try await StandInHarness.run { client, _, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let customer = try await client.createCustomer(email: "s@acme.example", name: "S", tenantID: "t", idempotencyKey: "c:s")
            let old = try await raw.send(.POST, "/v1/checkout/sessions",
                "mode=setup&customer=\(customer.id)&success_url=https%3A%2F%2Fx.example&payment_method_types%5B0%5D=card", key: "setup-old")
            #expect(old.status == 400)
            #expect(old.json.error["code"] as? String == "parameter_unknown")
            #expect(old.json.error["param"] as? String == "payment_method_types")
            #expect(old.json.error["message"] as? String == "Received unknown parameter: payment_method_types")

            let noCurrency = try await raw.send(.POST, "/v1/checkout/sessions",
                "mode=setup&customer=\(customer.id)&success_url=https%3A%2F%2Fx.example", key: "setup-no-currency")
            #expect(noCurrency.status == 400)
            #expect(noCurrency.json.error["code"] as? String == "parameter_missing")
            #expect(noCurrency.json.error["param"] as? String == "currency")

            let fixed = try await raw.send(.POST, "/v1/checkout/sessions",
                "mode=setup&customer=\(customer.id)&success_url=https%3A%2F%2Fx.example&currency=usd&allowed_payment_method_types%5B0%5D=card",
                key: "setup-new")
            #expect(fixed.status == 200)
            #expect(fixed.json["mode"] as? String == "setup")
        }
    }

    @Test(arguments: [
        ("/v1/customers", "email=a%40b.example&nickname=x", "parameter_unknown", "nickname"),
        ("/v1/checkout/sessions", "mode=payment&success_url=u&line_items%5B0%5D%5Bprice%5D=price_team_month&line_items%5B0%5D%5Bcolour%5D=red",
         "parameter_unknown", "line_items[0][colour]"),
        ("/v1/checkout/sessions", "mode=payment&success_url=u&line_items%5B0%5D%5Bprice%5D=price_team_month&line_items%5B0%5D%5Bquantity%5D=lots",
         "parameter_invalid_integer", "line_items[0][quantity]"),
        ("/v1/checkout/sessions", "mode=rental&success_url=u", nil, "mode"),
        ("/v1/checkout/sessions", "mode=payment&success_url=u", "parameter_missing", "line_items"),
        ("/v1/subscriptions/sub_x", "cancel_at_period_end=maybe", nil, "cancel_at_period_end"),
        ("/v1/payment_intents", "currency=usd", "parameter_missing", "amount"),
        ("/v1/refunds", "payment_intent=pi_x&reason=changed_my_mind", nil, "reason"),
        // The portal's session takes its own parameters, not Checkout's (both are `SessionCreateParams` in Python).
        ("/v1/billing_portal/sessions", "customer=cus_x&mode=payment", "parameter_unknown", "mode"),
        ("/v1/test_helpers/test_clocks", "name=later", "parameter_missing", "frozen_time"),
        // "" unsets; a parameter that cannot be unset is refused (cancel_at can be: see the schedule tests).
        ("/v1/customers", "email=", "parameter_invalid_empty", "email"),
        ("/v1/payment_intents", "amount=&currency=usd", "parameter_invalid_empty", "amount"),
    ] as [(String, String, String?, String)])
    func requestsStripeWouldRefuseAreRefusedNamingTheParameter(path: String, body: String, code: String?, param: String) async throws {
        try await StandInHarness.run { _, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let answer = try await raw.send(.POST, path, body, key: "k-\(UUID().uuidString)")
            #expect(answer.status == 400)
            #expect(answer.json.error["type"] as? String == "invalid_request_error")
            #expect(answer.json.error["code"] as? String == code)
            #expect(answer.json.error["param"] as? String == param)
            // Nothing was made, and nothing announced.
            let kind = ["/v1/customers": "customer", "/v1/checkout/sessions": "checkout.session", "/v1/payment_intents": "payment_intent",
                        "/v1/refunds": "refund",
                        "/v1/billing_portal/sessions": "billing_portal.session", "/v1/test_helpers/test_clocks": "test_helpers.test_clock"][path] ?? "subscription"
            #expect(await state.count(of: kind) == 0)
            #expect(await state.eventTypes().isEmpty)
        }
    }

    @Test func anEndpointItDoesNotImplementIsAJSON404() async throws {
        try await StandInHarness.run { _, _, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let answer = try await raw.send(.GET, "/v1/balance_transactions")
            #expect(answer.status == 404)
            #expect(answer.json.error["type"] as? String == "invalid_request_error")
            #expect((answer.json.error["message"] as? String)?.contains("Unrecognized request URL") == true)
        }
    }

    @Test func anUnknownStripeVersionIsRefusedAndThePinnedOneAccepted() async throws {
        try await StandInHarness.run { _, _, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let old = try await raw.send(.GET, "/v1/events", version: "2020-08-27")
            #expect(old.status == 400)
            #expect((old.json.error["message"] as? String)?.contains("Invalid Stripe API version: 2020-08-27") == true)
            let pinned = try await raw.send(.GET, "/v1/events", version: StripeConfiguration.apiVersion)
            #expect(pinned.status == 200)
        }
    }

    @Test func aRefusedRequestIsNotStoredUnderItsKeySoTheFixedOneRuns() async throws {
        try await StandInHarness.run { _, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let bad = try await raw.send(.POST, "/v1/customers", "email=a%40b.example&nickname=x", key: "fix-me")
            #expect(bad.status == 400)
            let good = try await raw.send(.POST, "/v1/customers", "email=a%40b.example", key: "fix-me")
            #expect(good.status == 200)
            #expect(await state.count(of: "customer") == 1)
        }
    }

    @Test func keysAreAtMost255CharactersAndExpireAfter24Hours() async throws {
        try await StandInHarness.run { _, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let long = try await raw.send(.POST, "/v1/customers", "email=a%40b.example", key: String(repeating: "k", count: 256))
            #expect(long.status == 400)
            #expect(await state.count(of: "customer") == 0)
            let edge = try await raw.send(.POST, "/v1/customers", "email=a%40b.example", key: String(repeating: "k", count: 255))
            #expect(edge.status == 200)

            let first = try await raw.send(.POST, "/v1/customers", "email=day%40b.example", key: "daily")
            let replay = try await raw.send(.POST, "/v1/customers", "email=day%40b.example", key: "daily")
            #expect(first.json["id"] as? String == replay.json["id"] as? String)
            await state.advanceClock(by: 23 * 3600)
            let stillKept = try await raw.send(.POST, "/v1/customers", "email=day%40b.example", key: "daily")
            #expect(stillKept.json["id"] as? String == first.json["id"] as? String)
            await state.advanceClock(by: 3600)
            let expired = try await raw.send(.POST, "/v1/customers", "email=day%40b.example", key: "daily")
            #expect(expired.status == 200)
            #expect(expired.json["id"] as? String != first.json["id"] as? String)
            #expect(await state.count(of: "customer") == 3)
        }
    }

    @Test func aKeyInFlightIsAnsweredWithAConflict() async throws {
        try await StandInHarness.run { _, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            await state.inject(StandInFault(kind: .delay, path: "/v1/customers", count: 1, delayMilliseconds: 1500))
            async let slow = raw.send(.POST, "/v1/customers", "email=slow%40b.example", key: "busy")
            try await Task.sleep(for: .milliseconds(300))
            let second = try await raw.send(.POST, "/v1/customers", "email=slow%40b.example", key: "busy")
            #expect(second.status == 409)
            #expect(second.json.error["code"] as? String == "idempotency_key_in_use")
            let first = try await slow
            #expect(first.status == 200)
            let after = try await raw.send(.POST, "/v1/customers", "email=slow%40b.example", key: "busy")
            #expect(after.json["id"] as? String == first.json["id"] as? String)
            #expect(await state.count(of: "customer") == 1)
        }
    }

    /// Stripe turns automatic payment methods on when a PaymentIntent names none, and then refuses to confirm it
    /// without a `return_url` unless redirects are `never`.
    @Test func aConfirmationThatCouldRedirectNeedsAReturnURL() async throws {
        try await StandInHarness.run { client, _, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let customer = try await client.createCustomer(email: "r@acme.example", name: "R", tenantID: "t", idempotencyKey: "c:r")
            let base = "amount=1500&currency=usd&customer=\(customer.id)&payment_method=pm_card_visa&confirm=true&off_session=true"
            let redirecting = try await raw.send(.POST, "/v1/payment_intents", base, key: "pi-1")
            #expect(redirecting.status == 400)
            #expect(redirecting.json.error["param"] as? String == "return_url")
            let never = try await raw.send(.POST, "/v1/payment_intents",
                base + "&automatic_payment_methods%5Benabled%5D=true&automatic_payment_methods%5Ballow_redirects%5D=never", key: "pi-2")
            #expect(never.status == 200)
            #expect(never.json["status"] as? String == "succeeded")
            let offSessionWithoutConfirm = try await raw.send(.POST, "/v1/payment_intents",
                "amount=1500&currency=usd&customer=\(customer.id)&off_session=true", key: "pi-3")
            #expect(offSessionWithoutConfirm.status == 400)
            #expect(offSessionWithoutConfirm.json.error["param"] as? String == "off_session")
        }
    }

    /// Off-session, nobody can authenticate: Stripe fails the attempt with `authentication_required`, leaves the
    /// PaymentIntent `requires_payment_method` and sends `payment_intent.payment_failed`.
    @Test func offSessionAuthenticationFailsAsAtStripe() async throws {
        try await StandInHarness.run { client, state, _, _ in
            let customer = try await client.createCustomer(email: "a@acme.example", name: "A", tenantID: "t", idempotencyKey: "c:a")
            do {
                _ = try await client.createPaymentIntent([
                    "amount": 1500, "currency": "usd", "customer": .string(customer.id),
                    "payment_method": "pm_card_authenticationRequired", "off_session": true, "confirm": true,
                    "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
                ], idempotencyKey: "auth-1")
                Issue.record("an off-session charge that needs authentication succeeded")
            } catch {
                guard case .refused(let refusal) = error as? StripeError else { Issue.record("\(error)"); return }
                #expect(refusal.httpStatus == 402)
                #expect(refusal.code == "authentication_required")
            }
            let types = await state.eventTypes()
            #expect(types.contains("payment_intent.payment_failed"))
            #expect(!types.contains("payment_intent.requires_action"))
        }
    }

    /// The objects the stand-in sends have every field of their resource at the pinned version, none it lacks, and
    /// no value left over from Stripe's example objects.
    @Test func itsObjectsHaveEveryFieldAndNoExampleLeftovers() async throws {
        try await StandInHarness.run { client, state, _, standIn in
            let customer = try await client.createCustomer(email: "o@acme.example", name: "O", tenantID: "t", idempotencyKey: "c:o")
            let subscription = try await client.createCheckoutSession([
                "mode": "subscription", "customer": .string(customer.id), "success_url": "https://x.example",
                "line_items": [["price": "price_team_month", "quantity": 3]],
            ], idempotencyKey: "cs-sub")
            _ = await state.complete(subscription.id, outcome: .pay)
            let setup = try await client.createCheckoutSession([
                "mode": "setup", "customer": .string(customer.id), "success_url": "https://x.example", "currency": "usd",
            ], idempotencyKey: "cs-setup")
            _ = await state.complete(setup.id, outcome: .pay)
            let intent = try await client.createPaymentIntent([
                "amount": 900, "currency": "usd", "customer": .string(customer.id), "payment_method": "pm_card_visa", "confirm": true,
                "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
            ], idempotencyKey: "pi-shape")
            _ = try await client.createRefund(["payment_intent": .string(intent.id), "amount": 100], idempotencyKey: "re-shape")
            // A disputed charge, and a subscription on a test clock that renews under a portal schedule.
            _ = try await client.createPaymentIntent([
                "amount": 700, "currency": "usd", "customer": .string(customer.id), "payment_method": "pm_card_createDispute", "confirm": true,
                "automatic_payment_methods": ["enabled": true, "allow_redirects": "never"],
            ], idempotencyKey: "pi-dispute")
            let start = Int(Date().timeIntervalSince1970)
            let clock = try await client.createTestClock(frozenTime: start, name: "shapes", idempotencyKey: "clock-shape")
            let clocked = try await client.createCustomer(
                email: "k@acme.example", name: "K", tenantID: "t", testClock: clock.id, idempotencyKey: "c:k")
            let renewing = try await client.createCheckoutSession([
                "mode": "subscription", "customer": .string(clocked.id), "success_url": "https://x.example",
                "line_items": [["price": "price_team_month", "quantity": 3]],
            ], idempotencyKey: "cs-clock")
            _ = await state.complete(renewing.id, outcome: .pay)
            let subscriptionID = try #require(try await client.retrieveCheckoutSession(renewing.id).subscription?.id)
            let portal = try await client.createPortalSession(customer: clocked.id, returnURL: "https://x.example", idempotencyKey: "bps-shape")
            #expect(await state.portalAction(portal.id, action: "downgrade", subscription: subscriptionID, value: "price_pro_month").hasPrefix("Saved"))
            let end = try #require(try await client.retrieveSubscription(subscriptionID).items.data.first?.currentPeriodEnd)
            _ = try await client.advanceTestClock(clock.id, to: end + 7200, idempotencyKey: "advance-shape")
            for _ in 0..<500 where try await client.retrieveTestClock(clock.id).status != "ready" {
                try await Task.sleep(for: .milliseconds(10))
            }
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            var events: [[String: Any]] = []
            var page = try await raw.send(.GET, "/v1/events", query: "limit=100").json
            events += page["data"] as? [[String: Any]] ?? []
            while page["has_more"] as? Bool == true, let last = events.last?["id"] as? String {
                page = try await raw.send(.GET, "/v1/events", query: "limit=100&starting_after=\(last)").json
                events += page["data"] as? [[String: Any]] ?? []
            }
            #expect(events.count >= 10)
            let definitions = StripeDefinitions.pinned
            var seen: Set<String> = []
            for event in events {
                #expect(Set(event.keys) == Set(definitions.resources["event"]!.fields.keys), "event \(event["type"] ?? "")")
                let object = (event["data"] as? [String: Any])?["object"] as? [String: Any] ?? [:]
                let kind = object["object"] as? String ?? "?"
                seen.insert(kind)
                let fields = Set(try #require(definitions.resources[kind], "\(kind) is not described").fields.keys)
                // Stripe's includable fields come only when expanded, never in an event.
                let includable: [String: Set<String>] = [
                    "invoice": ["payments"], "charge": ["refunds"], "checkout.session": ["line_items"],
                    "customer": ["cash_balance", "invoice_credit_balance", "sources", "subscriptions", "tax_ids"],
                ]
                let expected = fields.subtracting(includable[kind] ?? [])
                #expect(Set(object.keys).symmetricDifference(expected).isEmpty, "\(kind): extra \(Set(object.keys).subtracting(expected)), missing \(expected.subtracting(object.keys))")
                let text = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
                #expect(!text.contains("1234567890"), "\(kind) carries Stripe's example timestamp")
                #expect(!text.contains("cus_QXg1o8vcGmoR32"), "\(kind) carries an example customer id")
                // Placeholders of Stripe's examples: a string that repeats its own field's name, or an example id.
                #expect(Self.placeholders(in: object).isEmpty, "\(kind) carries example placeholders: \(Self.placeholders(in: object))")
            }
            #expect(seen.isSuperset(of: ["customer", "checkout.session", "subscription", "invoice", "invoice_payment", "payment_intent",
                                         "charge", "setup_intent", "refund", "dispute", "test_helpers.test_clock",
                                         "subscription_schedule"]), "\(seen)")
        }
    }

    /// Paths whose value is a placeholder of Stripe's examples (`"message": "message"`, `"id": "obj_123"`).
    static func placeholders(in value: Any, path: String = "") -> [String] {
        switch value {
        case let object as [String: Any]:
            return object.sorted { $0.key < $1.key }.flatMap { key, child -> [String] in
                if let text = child as? String, text == key || text == "obj_123" || text.contains("_1Pg") { return ["\(path).\(key)=\(text)"] }
                return placeholders(in: child, path: "\(path).\(key)")
            }
        case let items as [Any]:
            return items.enumerated().flatMap { placeholders(in: $1, path: "\(path)[\($0)]") }
        default:
            return []
        }
    }

    /// The committed definitions are what the pinned `stripe` package generates now (moving the pin is one command).
    @Test func theCommittedDefinitionsMatchAFreshGeneration() async throws {
        guard let python = ProcessInfo.processInfo.environment["BILLING_TEST_PYTHON"], !python.isEmpty else {
            Issue.record("BILLING_TEST_PYTHON is not set: run the tests with `make test`, which makes .venv")
            return
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let run = try await ProgramRun.run([python, root.appendingPathComponent("scripts/gen-stripe-definitions.py").path, "--check"])
        let text = run.output + run.errors
        #expect(run.succeeded, "\(text)")
        #expect(text.contains("matches stripe=="))
    }
}
