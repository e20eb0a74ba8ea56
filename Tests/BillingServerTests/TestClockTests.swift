import BillingServer
import Configuration
import Foundation
import HummingbirdTesting
import JSONRPC
import StripeAPI
import StripeStandIn
import Synchronization
import Testing

/// The server's clock in a test that moves a Stripe test clock: set to the clock's time after each advance, so that
/// what the server computes from time (grace periods, period ends) agrees with what Stripe did.
final class ServerClock: Sendable {
    private let time = Mutex(Date())
    var now: Date { time.withLock { $0 } }
    func set(_ seconds: Int) { time.withLock { $0 = Date(timeIntervalSince1970: TimeInterval(seconds)) } }
}

extension EventHarness {
    /// The test clock of the tenant's Stripe customer (`BILLING_STRIPE_TEST_CLOCKS`).
    func testClock(_ tenant: UUID) async throws -> String {
        let customer: String? = try await owner { try await $0.first("SELECT stripe_customer_id FROM billing.tenants WHERE id = '\(tenant)'") }
        guard let stripe = server.stripe, let customer, let clock = try await stripe.retrieveCustomer(customer).testClock?.id else {
            throw TestFailure("tenant \(tenant) has no Stripe customer on a test clock")
        }
        return clock
    }

    /// Moves the clock to `time`, waits until Stripe has done all that fell due meanwhile, moves the server's clock
    /// with it, and delivers the events.
    func advance(_ clock: String, to time: Int, server serverClock: ServerClock) async throws {
        guard let stripe = server.stripe else { throw TestFailure("this test runs without the stand-in") }
        _ = try await stripe.advanceTestClock(clock, to: time, idempotencyKey: UUID().uuidString)
        var ready = false
        for _ in 0..<500 where !ready {
            ready = try await stripe.retrieveTestClock(clock).status == "ready"
            if !ready { try await Task.sleep(for: .milliseconds(10)) }
        }
        guard ready else { throw TestFailure("test clock \(clock) is still advancing") }
        serverClock.set(time)
        try await deliverStandInEvents()
    }

    /// A tenant (on a test clock of its own) subscribed to Pro, in its 14-day trial; with `card`, that card is the
    /// subscription's default from then on (one that starts to fail, say).
    func clockedTenant(_ name: String = "Acme", card: String? = nil) async throws -> ClockedTenant {
        guard let stripe = server.stripe else { throw TestFailure("this test runs without the stand-in") }
        let tenant = try await server.provision(client, name: name)
        try await subscribe(tenant, plan: "pro")
        let subscription = try await subscriptionID(tenant)
        if let card {
            _ = try await stripe.updateSubscription(subscription, ["default_payment_method": .string(card)], idempotencyKey: UUID().uuidString)
        }
        guard let trialEnd = try await stripe.retrieveSubscription(subscription).trialEnd else { throw TestFailure("no trial on \(subscription)") }
        return ClockedTenant(
            tenant: tenant, admin: try await server.token(.admin, tenant: tenant), clock: try await testClock(tenant),
            subscription: subscription, trialEnd: trialEnd)
    }

    /// The tenant's Stripe Billing invoices as `billing.invoices` lists them.
    func stripeInvoices(_ tenant: UUID) async throws -> [JSONValue] {
        let listed = try await client.rpc("billing.invoices", token: try await server.token(.admin, tenant: tenant))
        guard case .array(let invoices) = listed["result"]?["invoices"] else { throw TestFailure("billing.invoices: \(listed)") }
        return invoices.filter { $0["source"] == "stripe" }
    }
}

struct ClockedTenant {
    var tenant: UUID
    var admin: String
    var clock: String
    var subscription: String
    var trialEnd: Int
}

/// Subscription lifecycles as Stripe runs them over time, on test clocks: trials that end, renewals that are paid or
/// declined and retried, and what the account's settings do after the last retry; each reaches the server as
/// Stripe's events and shows in `billing.status` and `billing.invoices`.
@Suite struct TestClockTests {
    static let extra = EventHarness.extra.merging(["BILLING_STRIPE_TEST_CLOCKS": "true"]) { $1 }
    static let hour = 3600
    static let day = 86400

    static func unpack(_ entry: ClockedTenant) -> (UUID, String, String, String, Int) {
        (entry.tenant, entry.admin, entry.clock, entry.subscription, entry.trialEnd)
    }

    static func monthAfter(_ time: Int) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return Int(calendar.date(byAdding: .month, value: 1, to: Date(timeIntervalSince1970: TimeInterval(time)))!.timeIntervalSince1970)
    }

    /// Test clocks exist in test mode only: the setting with a live key is refused when the configuration loads.
    @Test func testClocksAreRefusedWithALiveKey() throws {
        func load(_ key: String) throws -> BillingConfiguration {
            try BillingConfiguration(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: [
                "STRIPE_SECRET_KEY": key, "BILLING_STRIPE_TEST_CLOCKS": "true",
            ])))
        }
        #expect(try load("sk_test_clocks").stripeTestClocks)
        let error = #expect(throws: ConfigurationError.self) { try load("sk_live_clocks") }
        #expect(error?.description.contains("BILLING_STRIPE_TEST_CLOCKS is invalid") == true)
    }

    @Test func aTrialEndsAndThePlanRenewsEachMonth() async throws {
        let clock = ServerClock()
        try await TestServer.run(extra: Self.extra, stripe: true, now: { clock.now }) { client, server in
            let harness = EventHarness(client: client, server: server, signingTime: { clock.now })
            let (tenant, admin, testClock, _, trialEnd) = try await Self.unpack(harness.clockedTenant())
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["status"] == "trialing")
            let stripe = try #require(server.stripe)

            try await harness.advance(testClock, to: trialEnd - 3 * Self.day + 60, server: clock)
            let types = try await stripe.listEvents().events.map(\.type)
            #expect(types.contains("customer.subscription.trial_will_end"))
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["status"] == "trialing")

            // The trial's end: active, and the first month is invoiced and paid an hour later.
            try await harness.advance(testClock, to: trialEnd + 2 * Self.hour, server: clock)
            var status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["status"] == "active", "\(status)")
            #expect(status["result"]?["entitled"] == true)
            let invoices = try await harness.stripeInvoices(tenant)
            var paid = invoices.filter { $0["status"] == "paid" && $0["amountDue"] == 1900 }
            #expect(paid.count == 1, "\(invoices)")

            // A month on, again.
            let renewal = Self.monthAfter(trialEnd)
            try await harness.advance(testClock, to: renewal + 2 * Self.hour, server: clock)
            status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["status"] == "active")
            let periodEnd = ISO8601DateFormatter().date(from: status["result"]?["currentPeriodEnd"]?.stringValue ?? "")
            #expect(periodEnd.map { Int($0.timeIntervalSince1970) } == Self.monthAfter(renewal), "\(status)")
            paid = try await harness.stripeInvoices(tenant).filter { $0["status"] == "paid" && $0["amountDue"] == 1900 }
            #expect(paid.count == 2)
        }
    }

    /// A card that stops working: the renewal is declined, the subscription goes past due (still entitled during
    /// the grace period), each retry fails, and after the last Stripe cancels it (the account's default).
    @Test func aDeclinedRenewalGoesPastDueAndEndsAfterTheLastRetry() async throws {
        let clock = ServerClock()
        try await TestServer.run(extra: Self.extra, stripe: true, now: { clock.now }) { client, server in
            let harness = EventHarness(client: client, server: server, signingTime: { clock.now })
            let (tenant, admin, testClock, subscriptionID, trialEnd) = try await Self.unpack(harness.clockedTenant(card: "pm_card_chargeCustomerFail"))
            let stripe = try #require(server.stripe)

            let charged = trialEnd + Self.hour
            try await harness.advance(testClock, to: charged + 60, server: clock)
            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["status"] == "past_due", "\(status)")
            let invoices = try await harness.stripeInvoices(tenant)
            let open = invoices.filter { $0["status"] == "open" }
            #expect(open.count == 1, "\(invoices)")
            #expect(open.first?["amountDue"] == 1900)

            var retry = charged
            for days in [3, 5, 7] {
                retry += days * Self.day
                try await harness.advance(testClock, to: retry + 60, server: clock)
            }
            let ended = try await client.rpc("billing.status", token: admin)
            #expect(ended["result"]?["status"] != "past_due", "\(ended)")
            let state = try await harness.subscriptionState(tenant)
            #expect(state?.contains("canceled") == true, "\(state ?? "none")")
            #expect(try await stripe.retrieveSubscription(subscriptionID).status == "canceled")
        }
    }

    /// With the account set to mark subscriptions unpaid after the last retry: one tenant's card is fixed before a
    /// retry and the plan is active again; another's never is, and its subscription is unpaid, not entitled.
    @Test func aRetryThatSucceedsRestoresThePlanAndOneThatNeverDoesLeavesItUnpaid() async throws {
        let clock = ServerClock()
        try await TestServer.run(
            extra: Self.extra, stripe: true, now: { clock.now }, standIn: { $0.afterFinalFailure = .markUnpaid }
        ) { client, server in
            let harness = EventHarness(client: client, server: server, signingTime: { clock.now })
            let stripe = try #require(server.stripe)
            var tenants: [ClockedTenant] = []
            for name in ["Fixed", "Never"] { tenants.append(try await harness.clockedTenant(name, card: "pm_card_chargeCustomerFail")) }
            for entry in tenants {
                try await harness.advance(entry.clock, to: entry.trialEnd + Self.hour + 60, server: clock)
                let status = try await client.rpc("billing.status", token: try await server.token(.admin, tenant: entry.tenant))
                #expect(status["result"]?["status"] == "past_due")
            }
            // The first tenant's card is replaced before the first retry.
            let fixed = tenants[0]
            _ = try await stripe.updateSubscription(fixed.subscription, ["default_payment_method": "pm_card_visa"], idempotencyKey: UUID().uuidString)
            try await harness.advance(fixed.clock, to: fixed.trialEnd + Self.hour + 3 * Self.day + 60, server: clock)
            let restored = try await client.rpc("billing.status", token: try await server.token(.admin, tenant: fixed.tenant))
            #expect(restored["result"]?["status"] == "active", "\(restored)")
            #expect(try await harness.stripeInvoices(fixed.tenant).contains { $0["status"] == "paid" && $0["amountDue"] == 1900 })

            let never = tenants[1]
            var retry = never.trialEnd + Self.hour
            for days in [3, 5, 7] {
                retry += days * Self.day
                try await harness.advance(never.clock, to: retry + 60, server: clock)
            }
            let unpaid = try await client.rpc("billing.status", token: try await server.token(.admin, tenant: never.tenant))
            #expect(unpaid["result"]?["status"] == "unpaid", "\(unpaid)")
            #expect(unpaid["result"]?["entitled"] == false)
        }
    }

    /// A renewal charged to Stripe's dispute test card is disputed as soon as it is paid: the payment is recorded
    /// with its dispute open, and the plan stays active (a dispute is not a failed payment).
    @Test func aDisputedRenewalIsRecordedAgainstItsPayment() async throws {
        let clock = ServerClock()
        try await TestServer.run(extra: Self.extra, stripe: true, now: { clock.now }) { client, server in
            let harness = EventHarness(client: client, server: server, signingTime: { clock.now })
            let renewing = try await harness.clockedTenant(card: "pm_card_createDispute")
            let admin = renewing.admin
            try await harness.advance(renewing.clock, to: renewing.trialEnd + 2 * Self.hour, server: clock)

            let payments = try await client.rpc("billing.payments", token: admin)
            guard case .array(let listed) = payments["result"]?["payments"] else { throw TestFailure("billing.payments: \(payments)") }
            let renewal = try #require(listed.first { $0["amount"] == 1900 }, "\(payments)")
            #expect(renewal["dispute"] == "open", "\(renewal)")
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["status"] == "active")
        }
    }

    /// A top-up paid with Stripe's dispute test card is disputed at once: its credits freeze; the dispute won,
    /// they come back.
    @Test func aDisputedTopUpFreezesItsCreditsUntilTheDisputeIsWon() async throws {
        try await TestServer.run(extra: Self.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let started = try await client.rpc("billing.topUp", ["credits": .integer(1000)], token: try await server.token(.admin, tenant: tenant))
            let session = try #require(started["result"]?["sessionId"]?.stringValue, "\(started)")
            _ = await server.standIn!.complete(session, outcome: .disputed)
            try await harness.deliverStandInEvents()
            #expect(try await harness.balance(tenant) == (0, 1000))

            let dispute: String? = try await harness.owner { try await $0.first("SELECT dispute_id FROM billing.disputes WHERE tenant_id = '\(tenant)'") }
            let closed = await server.standIn!.closeDispute(try #require(dispute), won: true)
            #expect(closed.status == 200)
            try await harness.deliverStandInEvents()
            #expect(try await harness.balance(tenant) == (1000, 0))
        }
    }
}
