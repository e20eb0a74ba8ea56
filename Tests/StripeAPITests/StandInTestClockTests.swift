import Foundation
import StripeAPI
import StripeStandIn
import Testing

/// The stand-in's test clocks, as Stripe's: a customer on a clock lives in its time, and advancing the clock makes
/// what falls due happen, in order and dated by the clock.
@Suite struct StandInTestClockTests {
    struct Failure: Error { var reason: String }

    static let start = 1_800_000_000  // 2027-01-15T08:00:00Z

    static func monthAfter(_ time: Int) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return Int(calendar.date(byAdding: .month, value: 1, to: Date(timeIntervalSince1970: TimeInterval(time)))!.timeIntervalSince1970)
    }

    /// A subscription made through Checkout for `customer` and paid on the hosted page; its id.
    static func subscribe(
        _ customer: String, to price: String, quantity: Int, key: String, _ client: StripeClient, _ state: StandInState
    ) async throws -> String {
        let session = try await client.createCheckoutSession([
            "mode": "subscription", "customer": .string(customer), "success_url": "https://x.example/done",
            "line_items": [["price": .string(price), "quantity": .int(quantity)]],
        ], idempotencyKey: key)
        _ = await state.complete(session.id, outcome: .pay)
        guard let id = try await client.retrieveCheckoutSession(session.id).subscription?.id else { throw Failure(reason: "no subscription for \(session.id)") }
        return id
    }

    static func waitUntilReady(_ clock: String, _ client: StripeClient) async throws {
        for _ in 0..<500 {
            if try await client.retrieveTestClock(clock).status == "ready" { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw Failure(reason: "test clock \(clock) is still advancing")
    }

    @Test func aRenewalHappensWhenTheClockPassesThePeriodsEnd() async throws {
        try await StandInHarness.run { client, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let clock = try await client.createTestClock(frozenTime: Self.start, name: "renewal", idempotencyKey: "clock:renewal")
            #expect(clock.status == "ready")
            #expect(clock.frozenTime == Self.start)
            let customer = try await client.createCustomer(
                email: "r@acme.example", name: "R", tenantID: "t-renewal", testClock: clock.id, idempotencyKey: "customer:renewal")
            #expect(customer.testClock?.id == clock.id)
            // Made in the clock's time.
            #expect(try await raw.send(.GET, "/v1/customers/\(customer.id)").json["created"] as? Int == Self.start)

            let subscriptionID = try await Self.subscribe(customer.id, to: "price_pro_month", quantity: 1, key: "cs:renewal", client, state)
            let periodEnd = Self.monthAfter(Self.start)
            var subscription = try await raw.send(.GET, "/v1/subscriptions/\(subscriptionID)").json
            var item = try #require(((subscription["items"] as? [String: Any])?["data"] as? [[String: Any]])?.first)
            #expect(subscription["start_date"] as? Int == Self.start)
            #expect(item["current_period_end"] as? Int == periodEnd)

            // At the period's end the subscription renews and its invoice is drafted; an hour later it is charged.
            let renewed = periodEnd + 2 * 3600
            let advancing = try await client.advanceTestClock(clock.id, to: renewed, idempotencyKey: "advance:1")
            #expect(advancing.status == "advancing")
            try await Self.waitUntilReady(clock.id, client)
            #expect(try await client.retrieveTestClock(clock.id).frozenTime == renewed)
            subscription = try await raw.send(.GET, "/v1/subscriptions/\(subscriptionID)").json
            item = try #require(((subscription["items"] as? [String: Any])?["data"] as? [[String: Any]])?.first)
            #expect(item["current_period_start"] as? Int == periodEnd)
            #expect(item["current_period_end"] as? Int == Self.monthAfter(periodEnd))
            #expect(subscription["status"] as? String == "active")

            let events = try await client.listEvents().events
            func created(_ type: String) -> Int? { events.first { $0.type == type }?.created }
            #expect(created("invoice.created") == periodEnd)
            #expect(created("invoice.finalized") == periodEnd + 3600)
            #expect(created("invoice.paid") == periodEnd + 3600)
            #expect(created("test_helpers.test_clock.ready") == renewed)
            let invoiceID = try #require(subscription["latest_invoice"] as? String)
            let invoice = try await raw.send(.GET, "/v1/invoices/\(invoiceID)").json
            #expect(invoice["status"] as? String == "paid")
            #expect(invoice["amount_paid"] as? Int == 1900)
            #expect(invoice["billing_reason"] as? String == "subscription_cycle")
            #expect(await state.refusedRequests().isEmpty)
        }
    }

    @Test func aClockMovesOnlyForwardAndAtMostTwoIntervals() async throws {
        try await StandInHarness.run { client, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let clock = try await client.createTestClock(frozenTime: Self.start, name: "limits", idempotencyKey: "clock:limits")
            var customers: [String] = []
            for index in 0..<3 {
                customers.append(try await client.createCustomer(
                    email: "l\(index)@acme.example", name: "L", tenantID: "t-limits", testClock: clock.id, idempotencyKey: "customer:limits:\(index)").id)
            }
            // A fourth customer is one too many for one clock.
            let fourth = try await raw.send(.POST, "/v1/customers", "email=l3%40acme.example&test_clock=\(clock.id)", key: "customer:limits:3")
            #expect(fourth.status == 400)
            #expect(fourth.json.error["param"] as? String == "test_clock")

            _ = try await Self.subscribe(customers[0], to: "price_team_month", quantity: 3, key: "cs:limits", client, state)

            let backwards = try await raw.send(.POST, "/v1/test_helpers/test_clocks/\(clock.id)/advance", "frozen_time=\(Self.start - 1)", key: "a:back")
            #expect(backwards.status == 400)
            #expect(backwards.json.error["param"] as? String == "frozen_time")
            let tooFar = Self.monthAfter(Self.monthAfter(Self.start)) + 1
            let far = try await raw.send(.POST, "/v1/test_helpers/test_clocks/\(clock.id)/advance", "frozen_time=\(tooFar)", key: "a:far")
            #expect(far.status == 400)
            #expect(far.json.error["param"] as? String == "frozen_time")
            #expect(try await client.retrieveTestClock(clock.id).frozenTime == Self.start)
            _ = try await client.advanceTestClock(clock.id, to: tooFar - 1, idempotencyKey: "a:ok")
            try await Self.waitUntilReady(clock.id, client)

            // Deleting the clock deletes its customers.
            let deleted = try await raw.send(.DELETE, "/v1/test_helpers/test_clocks/\(clock.id)")
            #expect(deleted.json["deleted"] as? Bool == true)
            #expect(try await raw.send(.GET, "/v1/customers/\(customers[1])").status == 404)
            #expect(try await raw.send(.GET, "/v1/test_helpers/test_clocks/\(clock.id)").status == 404)
        }
    }

    /// Declined renewals are retried on the account's schedule (3, 5, 7 days); after the last, the subscription ends.
    @Test func aDeclinedRenewalIsRetriedThenCanceled() async throws {
        try await StandInHarness.run { client, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let clock = try await client.createTestClock(frozenTime: Self.start, name: "dunning", idempotencyKey: "clock:dunning")
            let customer = try await client.createCustomer(
                email: "d@acme.example", name: "D", tenantID: "t-dunning", testClock: clock.id, idempotencyKey: "customer:dunning")
            let subscriptionID = try await Self.subscribe(customer.id, to: "price_pro_month", quantity: 1, key: "cs:dunning", client, state)
            _ = try await client.updateSubscription(subscriptionID, ["default_payment_method": "pm_card_chargeCustomerFail"], idempotencyKey: "pm:fail")

            let charged = Self.monthAfter(Self.start) + 3600
            var time = charged + 60
            _ = try await client.advanceTestClock(clock.id, to: time, idempotencyKey: "a:0")
            try await Self.waitUntilReady(clock.id, client)
            var subscription = try await client.retrieveSubscription(subscriptionID)
            #expect(subscription.status == "past_due")
            let invoiceID = try #require(try await raw.send(.GET, "/v1/subscriptions/\(subscriptionID)").json["latest_invoice"] as? String)
            var invoice = try await raw.send(.GET, "/v1/invoices/\(invoiceID)").json
            #expect(invoice["status"] as? String == "open")
            #expect(invoice["attempt_count"] as? Int == 1)
            #expect(invoice["next_payment_attempt"] as? Int == charged + 3 * 86400)

            var retry = charged
            for (attempt, days) in [(2, 3), (3, 5), (4, 7)] {
                retry += days * 86400
                time = retry + 60
                _ = try await client.advanceTestClock(clock.id, to: time, idempotencyKey: "a:\(attempt)")
                try await Self.waitUntilReady(clock.id, client)
                invoice = try await raw.send(.GET, "/v1/invoices/\(invoiceID)").json
                #expect(invoice["attempt_count"] as? Int == attempt)
            }
            #expect(invoice["next_payment_attempt"] is NSNull)
            subscription = try await client.retrieveSubscription(subscriptionID)
            #expect(subscription.status == "canceled")
            let types = try await client.listEvents().events.map(\.type)
            #expect(types.filter { $0 == "invoice.payment_failed" }.count == 4)
            #expect(types.contains("customer.subscription.deleted"))
        }
    }

    /// An update whose proration invoice cannot be paid: with `allow_incomplete` (the default) the change applies and
    /// the subscription is past due; the behaviours the stand-in does not implement are refused, not guessed.
    @Test func anUnpaidUpdateWithAllowIncompleteMakesTheSubscriptionPastDue() async throws {
        try await StandInHarness.run { client, state, _, standIn in
            let raw = RawCall(base: "http://127.0.0.1:\(standIn.port!)")
            let customer = try await client.createCustomer(email: "u@acme.example", name: "U", tenantID: "t-u", idempotencyKey: "customer:u")
            let subscriptionID = try await Self.subscribe(customer.id, to: "price_team_month", quantity: 3, key: "cs:u", client, state)
            let item = try #require(try await client.retrieveSubscription(subscriptionID).items.data.first?.id)
            _ = try await client.updateSubscription(subscriptionID, ["default_payment_method": "pm_card_chargeCustomerFail"], idempotencyKey: "pm:u")

            let refused = try await raw.send(.POST, "/v1/subscriptions/\(subscriptionID)",
                "items%5B0%5D%5Bid%5D=\(item)&items%5B0%5D%5Bquantity%5D=5&proration_behavior=always_invoice&payment_behavior=error_if_incomplete", key: "u:error")
            #expect(refused.status == 400)
            #expect(refused.json.error["param"] as? String == "payment_behavior")
            let updated = try await client.updateSubscription(
                subscriptionID, ["items": [["id": .string(item), "quantity": 5]], "proration_behavior": "always_invoice"], idempotencyKey: "u:allow")
            #expect(updated.status == "past_due")
            #expect(updated.items.data.first?.quantity == 5)
        }
    }
}
