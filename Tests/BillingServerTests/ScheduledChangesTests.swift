import Billing
import BillingStore
import BillingDevSupport
import Foundation
import HummingbirdTesting
import JSONRPC
import Logging
import StripeAPI
import Testing

/// Endings and changes Stripe schedules on its side: `cancel_at` (how Clover schedules cancellations), the portal's
/// downgrade at the period's end (a subscription schedule), and upgrades whose payment fails (pending updates).
@Suite struct ScheduledChangesTests {
    func portalSession(_ client: some TestClientProtocol, _ admin: String) async throws -> String {
        let opened = try await client.rpc("billing.portal", token: admin)
        let url = try #require(opened["result"]?["url"]?.stringValue, "\(opened)")
        return String(try #require(url.split(separator: "/").last))
    }

    @Test func aCancelAtSetAtStripeShowsWhenAndWhyAndResumeClearsIt() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let subscriptionID = try await harness.subscriptionID(tenant)
            // Set in Stripe's dashboard: end in ten days, before the period's end.
            let cancelAt = Int(Date().timeIntervalSince1970) + 10 * 86400
            _ = try await server.stripe!.updateSubscription(subscriptionID, ["cancel_at": .int(cancelAt)], idempotencyKey: UUID().uuidString)
            try await harness.deliverStandInEvents()
            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["cancelAtPeriodEnd"] == false)
            #expect(status["result"]?["cancelReason"] == "cancel_at")
            #expect(status["result"]?["cancelAt"]?.stringValue == Date(timeIntervalSince1970: Double(cancelAt)).formatted(.iso8601))
            #expect(status["result"]?["entitled"] == true)

            let resumed = try await client.rpc("billing.resume", token: admin)
            #expect(resumed["result"]?["cancelAt"] == .null, "\(resumed)")
            #expect(resumed["result"]?["cancelReason"] == .null)
            let atStripe = try await server.stripe!.retrieveSubscription(subscriptionID)
            #expect(atStripe.cancelAt == nil)
            #expect(atStripe.cancelAtPeriodEnd == false)
            #expect(try await client.rpc("billing.resume", token: admin).errorName == "PRECONDITION_FAILED")

            // billing.cancel at the period's end says so too.
            let canceled = try await client.rpc("billing.cancel", token: admin)
            #expect(canceled["result"]?["cancelReason"] == "period_end")
            #expect(canceled["result"]?["cancelAt"]?.stringValue != nil, "\(canceled)")
            #expect(canceled["result"]?["cancelAt"] == canceled["result"]?["currentPeriodEnd"])
        }
    }

    @Test func thePortalsDowngradeAtThePeriodsEndIsAScheduleThatResumeReleases() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let subscriptionID = try await harness.subscriptionID(tenant)
            let portal = try await portalSession(client, admin)
            let notice = await server.standIn!.portalAction(portal, action: "downgrade", subscription: subscriptionID, value: "price_pro_month")
            #expect(notice.hasPrefix("Saved"), "\(notice)")
            try await harness.deliverStandInEvents()

            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["plan"] == "team")
            #expect(status["result"]?["pendingChange"]?["plan"] == "pro", "\(status)")
            #expect(status["result"]?["pendingChange"]?["source"] == "schedule")
            #expect(status["result"]?["pendingChange"]?["effectiveAt"] == status["result"]?["currentPeriodEnd"])

            // The plan-change job leaves it to the schedule.
            let changed = try await harness.runPlanChangeJob(at: Date().addingTimeInterval(40 * 86400))
            #expect(changed.isEmpty)
            #expect(try await server.stripe!.retrieveSubscription(subscriptionID).items.data.first?.priceID == "price_team_month")

            // Resume undoes it however Stripe scheduled it: the schedule is released.
            let resumed = try await client.rpc("billing.resume", token: admin)
            #expect(resumed["result"]?["pendingChange"] == .null, "\(resumed)")
            #expect(resumed["result"]?["plan"] == "team")
            let atStripe = try await server.stripe!.retrieveSubscription(subscriptionID)
            #expect(atStripe.schedule == nil)
            try await harness.deliverStandInEvents()
            let after = try await client.rpc("billing.status", token: admin)
            #expect(after["result"]?["pendingChange"] == .null)
            #expect(try await harness.count("SELECT count(*)::int FROM billing.audit_events WHERE action = 'subscription.schedule_released'") >= 1)
        }
    }

    @Test func aRequestedDowngradeUnderAScheduleIsLeftToTheScheduleAndAudited() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            _ = try await client.rpc("billing.changePlan", ["plan": "pro"], token: admin)
            // Then a schedule appears at Stripe (made in the dashboard) while the request waits.
            try await harness.owner {
                try await $0.run("UPDATE billing.subscriptions SET stripe_schedule_id = 'sub_sched_dashboard' WHERE tenant_id = '\(tenant)'")
            }
            let changed = try await harness.runPlanChangeJob(at: Date().addingTimeInterval(40 * 86400))
            #expect(changed.isEmpty)
            #expect(try await harness.count("SELECT count(*)::int FROM billing.audit_events WHERE action = 'plan.change_left_to_schedule'") == 1)
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["pendingChange"] == .null)
        }
    }

    /// Stripe takes no cancellation on a subscription a schedule governs, and the schedule's next phase would undo a
    /// plan change: both release it first. A schedule released at Stripe before its webhook came is let be.
    @Test func cancellingOrChangingPlanUnderAScheduleReleasesItFirst() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let subscriptionID = try await harness.subscriptionID(tenant)
            let stripe = try #require(server.stripe)
            func downgradeInPortal() async throws {
                let notice = await server.standIn!.portalAction(
                    try await portalSession(client, admin), action: "downgrade", subscription: subscriptionID, value: "price_pro_month")
                #expect(notice.hasPrefix("Saved"), "\(notice)")
                try await harness.deliverStandInEvents()
            }
            try await downgradeInPortal()
            await #expect(throws: StripeError.self) {
                _ = try await stripe.updateSubscription(subscriptionID, ["cancel_at_period_end": true], idempotencyKey: UUID().uuidString)
            }
            let canceled = try await client.rpc("billing.cancel", token: admin)
            #expect(canceled["result"]?["cancelReason"] == "period_end", "\(canceled)")
            #expect(canceled["result"]?["pendingChange"] == .null)
            var atStripe = try await stripe.retrieveSubscription(subscriptionID)
            #expect(atStripe.schedule == nil)
            #expect(atStripe.cancelAtPeriodEnd == true)
            try await harness.deliverStandInEvents()
            #expect(try await client.rpc("billing.resume", token: admin)["result"]?["cancelReason"] == .null)

            // Again, and this time the schedule is released at Stripe before its webhook comes: the change goes on.
            try await downgradeInPortal()
            let schedule = try #require(try await stripe.retrieveSubscription(subscriptionID).schedule?.id)
            _ = try await stripe.releaseSubscriptionSchedule(schedule, idempotencyKey: UUID().uuidString)
            let changed = try await client.rpc("billing.changePlan", ["plan": "pro"], token: admin)
            #expect(changed["result"]?["pendingChange"]?["plan"] == "pro", "\(changed)")
            #expect(changed["result"]?["pendingChange"]?["source"] == "request")
            atStripe = try await stripe.retrieveSubscription(subscriptionID)
            #expect(atStripe.schedule == nil)
            #expect(atStripe.items.data.first?.priceID == "price_team_month")
        }
    }

    /// Upgrades and seat increases are invoiced at once and apply only when paid: a declined card leaves the tenant
    /// where it was, and says so.
    @Test func anUpgradeWhosePaymentFailsLeavesThePlanAsItWas() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let subscriptionID = try await harness.subscriptionID(tenant)
            // A good card: more seats are charged and applied at once.
            let more = try await client.rpc("billing.updateSeats", ["seats": 5], token: admin)
            #expect(more["result"]?["seats"] == 5, "\(more)")
            // The card on file now declines.
            _ = try await server.stripe!.updateSubscription(
                subscriptionID, ["default_payment_method": "pm_card_chargeCustomerFail"], idempotencyKey: UUID().uuidString)
            let refused = try await client.rpc("billing.updateSeats", ["seats": 8], token: admin)
            #expect(refused.errorName == "PAYMENT_REQUIRED", "\(refused)")
            #expect(refused.errorMessage.contains("stays on 5 seat"))
            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["seats"] == 5)
            #expect(status["result"]?["pendingUpdate"]?["expiresAt"]?.stringValue != nil, "\(status)")
            let upgrade = try await client.rpc("billing.changePlan", ["plan": "team", "interval": "year"], token: admin)
            #expect(upgrade.errorName == "PAYMENT_REQUIRED", "\(upgrade)")
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["interval"] == "month")
            let atStripe = try await server.stripe!.retrieveSubscription(subscriptionID)
            #expect(atStripe.items.data.first?.quantity == 5)
            #expect(atStripe.pendingUpdate != nil)
            // Fewer seats cost nothing now: that change applies (prorated as BILLING_PRORATION_BEHAVIOR says).
            _ = try await server.stripe!.updateSubscription(subscriptionID, ["default_payment_method": "pm_card_visa"], idempotencyKey: UUID().uuidString)
            try await harness.deliverStandInEvents()
            let fewer = try await client.rpc("billing.updateSeats", ["seats": 4], token: admin)
            #expect(fewer["result"]?["seats"] == 4, "\(fewer)")
        }
    }
}

extension ScheduledChangesTests {
    /// A change waiting for its payment applies once its invoice is paid, here on Stripe's hosted invoice page (the
    /// link `billing.invoices` gives): Stripe sends `customer.subscription.pending_update_applied`.
    @Test func anUpgradePaidLaterOnItsInvoicePageApplies() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let subscriptionID = try await harness.subscriptionID(tenant)
            _ = try await server.stripe!.updateSubscription(
                subscriptionID, ["default_payment_method": "pm_card_chargeCustomerFail"], idempotencyKey: UUID().uuidString)
            let refused = try await client.rpc("billing.updateSeats", ["seats": 8], token: admin)
            #expect(refused.errorName == "PAYMENT_REQUIRED", "\(refused)")
            try await harness.deliverStandInEvents()

            let listed = try await client.rpc("billing.invoices", token: admin)
            guard case .array(let invoices) = listed["result"]?["invoices"] else { throw TestFailure("billing.invoices: \(listed)") }
            let open = try #require(invoices.first { $0["source"] == "stripe" && $0["status"] == "open" }, "\(listed)")
            let url = try #require(open["url"]?.stringValue.flatMap(URL.init(string:)))
            // A declined card on the page changes nothing; a good one pays.
            #expect(await server.standIn!.payInvoice(url.lastPathComponent, paymentMethod: "pm_card_chargeDeclined").contains("declined"))
            #expect(await server.standIn!.payInvoice(url.lastPathComponent, paymentMethod: "pm_card_visa").hasPrefix("Paid"))
            try await harness.deliverStandInEvents()
            let status = try await client.rpc("billing.status", token: admin)
            #expect(status["result"]?["seats"] == 8, "\(status)")
            #expect(status["result"]?["pendingUpdate"] == .null)
            let types = try await server.stripe!.listEvents().events.map(\.type)
            #expect(types.contains("customer.subscription.pending_update_applied"))
        }
    }
}
