import Billing
import BillingCore
import BillingStore
import BillingDevSupport
import Foundation
import HummingbirdTesting
import JSONRPC
import Logging
import PostgresNIO
import Testing

/// What tenant admins and operators do day to day, through the running server with the stand-in and its webhooks.
@Suite struct ManagementAPITests {
    @Test func seatsChangeInsideTheRangeAndAreRefusedOutsideIt() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            // No subscription yet: what to do instead.
            let none = try await client.rpc("billing.updateSeats", ["seats": 4], token: admin)
            #expect(none.errorName == "PRECONDITION_FAILED")
            #expect(none.errorMessage.contains("billing.checkout"))

            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let changed = try await client.rpc("billing.updateSeats", ["seats": 5], token: admin)
            #expect(changed["result"]?["seats"] == 5, "\(changed)")
            let outside = try await client.rpc("billing.updateSeats", ["seats": 51], token: admin)
            #expect(outside.errorCode == -32602)
            #expect(outside.errorMessage.contains("between 3 and 50"))
            let member = try await client.rpc("billing.updateSeats", ["seats": 6], token: try await server.token(.member, tenant: tenant))
            #expect(member.errorName == "FORBIDDEN")
            // Stripe's own events about the change confirm it; nothing moves back.
            try await harness.deliverStandInEvents()
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["seats"] == 5)
            let stripeQuantity = try await harness.owner { proxy -> String? in
                try await proxy.first("SELECT stripe_subscription_id FROM billing.subscriptions WHERE tenant_id = '\(tenant)'")
            }
            let subscription = try await server.stripe!.retrieveSubscription(try #require(stripeQuantity))
            #expect(subscription.items.data.first?.quantity == 5)
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.audit_events WHERE action = 'subscription.seats_changed' AND actor = 'user-admin'") == 1)
        }
    }

    @Test func aPlanWithoutSeatsSaysToChangePlan() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            try await harness.subscribe(tenant, plan: "pro")
            let refused = try await client.rpc("billing.updateSeats", ["seats": 2], token: try await server.token(.owner, tenant: tenant))
            #expect(refused.errorName == "PRECONDITION_FAILED")
            #expect(refused.errorMessage.contains("billing.changePlan"))
        }
    }

    @Test func cancelThenResumeAndOnlyOperatorsCancelAtOnce() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let admin = try await server.token(.admin, tenant: tenant)
            #expect(try await client.rpc("billing.resume", token: admin).errorName == "PRECONDITION_FAILED")
            let scheduled = try await client.rpc("billing.cancel", token: admin)
            #expect(scheduled["result"]?["cancelAtPeriodEnd"] == true)
            #expect(scheduled["result"]?["entitled"] == true)
            let resumed = try await client.rpc("billing.resume", token: admin)
            #expect(resumed["result"]?["cancelAtPeriodEnd"] == false)
            // Cancel again after resuming: a new request to Stripe, not a replay of the first.
            #expect(try await client.rpc("billing.cancel", ["atPeriodEnd": true], token: admin)["result"]?["cancelAtPeriodEnd"] == true)
            try await harness.deliverStandInEvents()
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["cancelAtPeriodEnd"] == true)

            let now = try await client.rpc("billing.cancel", ["atPeriodEnd": false], token: admin)
            #expect(now.errorName == "FORBIDDEN")
            let byOperator = try await client.rpc(
                "billing.cancel", ["tenantId": .string(tenant.uuidString), "atPeriodEnd": false], token: try await server.token(.operator))
            #expect(byOperator["result"]?["status"] == "canceled")
            #expect(byOperator["result"]?["entitled"] == false)
            try await harness.deliverStandInEvents()
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["status"] == "canceled")
        }
    }

    @Test func entitlementsFollowStatusAndGrace() async throws {
        try await TestServer.run(extra: EventHarness.extra.merging(["BILLING_GRACE_PERIOD_SECONDS": "3600"]) { $1 }) { client, server in
            let harness = EventHarness(client: client, server: server)
            let member = { (tenant: UUID) in try await server.token(.member, tenant: tenant) }
            let fresh = try await server.provision(client)
            let free = try await client.rpc("billing.entitlements", token: try await member(fresh))
            #expect(free["result"]?["plan"] == "free")
            #expect(free["result"]?["entitled"] == true)

            // Past due for 30 minutes: still entitled to team's features, with the grace end.
            let recent = try await harness.tenant(customer: "cus_grace_recent")
            try await harness.deliver(EventHarness.event(
                "evt_grace_recent", "customer.subscription.updated",
                EventHarness.subscription("sub_grace_recent", customer: "cus_grace_recent", status: "past_due"), created: harness.now - 1800))
            // Past due for two hours: no longer.
            let late = try await harness.tenant(customer: "cus_grace_late")
            try await harness.deliver(EventHarness.event(
                "evt_grace_late", "customer.subscription.updated",
                EventHarness.subscription("sub_grace_late", customer: "cus_grace_late", status: "past_due"), created: harness.now - 7200))
            try await harness.drain()
            let inGrace = try await client.rpc("billing.entitlements", token: try await member(recent))
            #expect(inGrace["result"]?["entitled"] == true)
            #expect(inGrace["result"]?["featuresPlan"] == "team")
            #expect(inGrace["result"]?["features"] == ["projects", "api", "priority_support", "sso", "audit_log"])
            #expect(inGrace["result"]?["graceEndsAt"]?.stringValue != nil)
            let lapsed = try await client.rpc("billing.entitlements", token: try await member(late))
            #expect(lapsed["result"]?["plan"] == "team")
            #expect(lapsed["result"]?["entitled"] == false)
            #expect(lapsed["result"]?["featuresPlan"] == "free")
            #expect(lapsed["result"]?["limits"]?["projects"] == 3)
        }
    }

    /// A partial refund, its repeat, an over-refund, and the audit trail that accounts for each.
    @Test func refundsArePartialIdempotentBoundedAndSettledByTheWebhook() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let (tenant, operatorToken, payment) = try await Self.toppedUp(harness, credits: 1000)
            #expect(payment["amountRefundable"] == 1000)
            #expect(payment["purpose"] == "credit_topup")
            let paymentID = try #require(payment["paymentId"]?.stringValue)

            let refund = { (amount: Int) in
                try await client.rpc("billing.refund", [
                    "tenantId": .string(tenant.uuidString), "paymentId": .string(paymentID), "amount": .integer(amount),
                    "reason": "requested by customer",
                ], token: operatorToken)
            }
            let first = try await refund(300)
            #expect(first["result"]?["amount"] == 300)
            #expect(first["result"]?["replayed"] == false)
            let repeated = try await refund(300)
            #expect(repeated["result"]?["refundId"] == first["result"]?["refundId"])
            #expect(repeated["result"]?["replayed"] == true)
            let over = try await refund(800)
            #expect(over.errorCode == -32602)
            #expect(over.errorMessage.contains("from 1 to 700"))
            let byAdmin = try await client.rpc("billing.refund", ["paymentId": .string(paymentID)], token: try await server.token(.admin, tenant: tenant))
            #expect(byAdmin.errorName == "FORBIDDEN")

            // The credits are settled by Stripe's charge.refunded, not by the call.
            #expect(try await harness.balance(tenant) == (1000, 0))
            try await harness.deliverStandInEvents()
            #expect(try await harness.balance(tenant) == (700, 0))
            let after = try await client.rpc("billing.payments", ["tenantId": .string(tenant.uuidString)], token: operatorToken)
            #expect(after["result"]?["payments"]?[0]?["amountRefundable"] == 700)
            #expect(after["result"]?["payments"]?[0]?["refunds"]?[0]?["refundId"] == first["result"]?["refundId"])

            let audit = try await client.rpc("billing.auditLog", ["limit": 200], token: try await server.token(.owner, tenant: tenant))
            guard case .array(let entries)? = audit["result"]?["entries"] else { throw TestFailure("\(audit)") }
            let actions = entries.compactMap { $0["action"]?.stringValue }
            #expect(actions.contains("refund.requested"))
            #expect(actions.contains("credits.topped_up"))
            #expect(actions.contains("payment.updated"))
            let requested = entries.first { $0["action"] == "refund.requested" }
            #expect(requested?["actorType"] == "operator")
            #expect(requested?["after"]?["amount"] == "300")
            let forMember = try await client.rpc("billing.auditLog", token: try await server.token(.member, tenant: tenant))
            #expect(forMember.errorName == "FORBIDDEN")
        }
    }
}

extension ManagementAPITests {
    /// A tenant that bought `credits` through the stand-in, an operator's token, and that payment as
    /// `billing.payments` lists it.
    static func toppedUp(_ harness: EventHarness, credits: Int) async throws -> (UUID, String, JSONValue) {
        let tenant = try await harness.server.provision(harness.client)
        try await harness.topUp(tenant, credits: credits)
        let operatorToken = try await harness.server.token(.operator)
        let listed = try await harness.client.rpc("billing.payments", ["tenantId": .string(tenant.uuidString)], token: operatorToken)
        return (tenant, operatorToken, try #require(listed["result"]?["payments"]?[0]))
    }

    /// A refund Stripe later reports failed (the card was closed) gives its credits back, shows as failed with its
    /// reason, and the same request then refunds again instead of returning the failed refund.
    @Test func aRefundThatFailsGivesTheCreditsBackAndMayBeAskedAgain() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let (tenant, operatorToken, bought) = try await Self.toppedUp(harness, credits: 1000)
            let paymentID = try #require(bought["paymentId"]?.stringValue)
            let refund = {
                try await client.rpc("billing.refund", [
                    "tenantId": .string(tenant.uuidString), "paymentId": .string(paymentID), "amount": 400, "reason": "duplicate",
                ], token: operatorToken)
            }
            let first = try await refund()
            let firstID = try #require(first["result"]?["refundId"]?.stringValue)
            try await harness.deliverStandInEvents()
            #expect(try await harness.balance(tenant) == (600, 0))

            // Stripe reports it failed a while later.
            let failed = await server.standIn!.failRefund(firstID)
            #expect(failed.status == 200)
            try await harness.deliverStandInEvents()
            #expect(try await harness.balance(tenant) == (1000, 0))
            let payments = try await client.rpc("billing.payments", ["tenantId": .string(tenant.uuidString)], token: operatorToken)
            let payment = try #require(payments["result"]?["payments"]?[0])
            #expect(payment["amountRefunded"] == 0)
            #expect(payment["amountRefundable"] == 1000)
            #expect(payment["refunds"]?[0]?["status"] == "failed")
            #expect(payment["refunds"]?[0]?["failureReason"] == "expired_or_canceled_card")

            // The same request is not a replay of the failed refund: it refunds again.
            let second = try await refund()
            #expect(second["result"]?["replayed"] == false)
            let secondID = try #require(second["result"]?["refundId"]?.stringValue)
            #expect(secondID != firstID)
            #expect(try await refund()["result"]?["refundId"]?.stringValue == secondID)
            try await harness.deliverStandInEvents()
            #expect(try await harness.balance(tenant) == (600, 0))

            let audit = try await client.rpc("billing.auditLog", ["limit": 200], token: try await server.token(.owner, tenant: tenant))
            guard case .array(let entries)? = audit["result"]?["entries"] else { throw TestFailure("\(audit)") }
            let failure = try #require(entries.first { $0["action"] == "refund.failed" })
            #expect(failure["before"]?["status"] == "succeeded")
            #expect(failure["after"]?["failureReason"] == "expired_or_canceled_card")
        }
    }
}

extension TenantLifecycleTests {
    /// A subscription that comes alive for a deleted tenant (here through a Checkout this server never opened, as one
    /// made in Stripe's dashboard would be) is canceled at Stripe as soon as its first event arrives.
    @Test func aSubscriptionBornAfterTheTenantWasDeletedIsCanceledAtStripe() async throws {
        // Events to the product are on (to an endpoint that is down), to see what it is told.
        let extra = OutboxTests.sendingEvents(to: "http://127.0.0.1:9/events", pollMilliseconds: 600_000)
        try await TestServer.run(extra: extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server, extra: extra)
            let tenant = try await server.provision(client, name: "Gone Ltd")
            let stripe = try #require(server.stripe)
            let outside = try await harness.outsideCheckout(tenant)
            let deleted = try await client.rpc("tenants.delete", ["tenantId": .string(tenant.uuidString)], token: try await server.token(.service))
            #expect(deleted["result"]?["deletedAt"]?.stringValue != nil, "\(deleted)")

            // Paid afterwards: Stripe now bills a tenant that no longer exists, until its events arrive here.
            _ = await server.standIn!.complete(outside, outcome: .pay)
            let subscriptionID = try #require(try await stripe.retrieveCheckoutSession(outside).subscription?.id)
            #expect(try await stripe.retrieveSubscription(subscriptionID).status == "active")
            try await harness.deliverStandInEvents()
            #expect(try await stripe.retrieveSubscription(subscriptionID).status == "canceled")
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.subscriptions WHERE stripe_subscription_id = '\(subscriptionID)' AND status = 'canceled'") == 1)
            let audit = try await client.rpc("billing.auditLog", ["tenantId": .string(tenant.uuidString), "limit": 50],
                                             token: try await server.token(.operator))
            guard case .array(let entries)? = audit["result"]?["entries"] else { throw TestFailure("\(audit)") }
            let canceled = try #require(entries.first { $0["action"] == "subscription.canceled" })
            #expect(canceled["after"]?["reason"] == "the tenant is deleted")
            #expect(canceled["actorType"] == "stripe")
            let told: String? = try await harness.owner {
                try await $0.first("""
                    SELECT coalesce(string_agg(type || '=' || CASE type WHEN 'entitlement.changed' THEN payload::jsonb #>> '{data,entitled}'
                                                               ELSE payload::jsonb #>> '{data,status}' END, ' ' ORDER BY created_at, event_id), '')
                    FROM billing.outbox_events WHERE tenant_id = '\(tenant)' AND type IN ('subscription.changed', 'entitlement.changed')
                    """)
            }
            // It was canceled before it was ever applied: the product was never told of it at all.
            #expect(told == "", "\(told ?? "-")")
            // Every event about it is settled; none waits or failed.
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.stripe_events WHERE status NOT IN ('processed', 'stale', 'ignored')") == 0)
        }
    }
}

extension TenantLifecycleTests {
    /// A subscription's first events that run while `tenants.delete` does (it holds the tenant and has listed the
    /// subscriptions, none yet) wait for the deletion, then see it and cancel the subscription at Stripe: neither
    /// passes the other unseen.
    @Test func aSubscriptionEventDuringTheDeletionWaitsForItThenCancels() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let stripe = try #require(server.stripe)
            let outside = try await harness.outsideCheckout(tenant)
            _ = await server.standIn!.complete(outside, outcome: .pay)
            let subscriptionID = try #require(try await stripe.retrieveCheckoutSession(outside).subscription?.id)
            // Its first event is in the inbox, not yet processed (the others would catch it later: this one alone).
            let created = try #require(try await stripe.listEvents().events.first { $0.type == "customer.subscription.created" })
            try await harness.deliver(Array(created.raw))

            let logger = Logger(label: "test.deletion")
            try await server.database.ownerURL.withConnection(logger: logger) { deletion in
                try await deletion.query("BEGIN", logger: logger)
                try await deletion.query("SELECT 1 FROM billing.tenants WHERE id = \(tenant) FOR UPDATE", logger: logger)
                let events = Task { try await harness.drain() }
                // The event's transaction is waiting for the deletion's lock (the check would pass without it).
                #expect(try await DurabilityTests.eventually {
                    try await harness.count("SELECT count(*)::int FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()") >= 1
                })
                #expect(try await stripe.retrieveSubscription(subscriptionID).status == "active")
                try await deletion.query("UPDATE billing.tenants SET deleted_at = now() WHERE id = \(tenant)", logger: logger)
                try await deletion.query("COMMIT", logger: logger)
                try await events.value
            }
            #expect(try await stripe.retrieveSubscription(subscriptionID).status == "canceled")
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.subscriptions WHERE stripe_subscription_id = '\(subscriptionID)' AND status = 'canceled'") == 1)
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.stripe_events WHERE status NOT IN ('processed', 'stale', 'ignored')") == 0)
        }
    }

    /// A subscription left live for a deleted tenant by any other way (the race above is closed; this is the last
    /// check) is caught by the next reconciliation pass and canceled at Stripe.
    @Test func reconciliationCancelsWhatStillBillsADeletedTenant() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            let subscriptionID = try #require(try await harness.owner {
                try await $0.first("SELECT stripe_subscription_id FROM billing.subscriptions WHERE tenant_id = '\(tenant)'") as String?
            })
            // What the race leaves: the tenant deleted, its subscription live here and at Stripe. And one Stripe no
            // longer has at all.
            try await harness.owner {
                try await $0.run("UPDATE billing.tenants SET deleted_at = now() WHERE id = '\(tenant)'")
                try await $0.run("""
                    INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, plan, billing_interval, seats, status, is_current)
                    VALUES ('\(tenant)', 'sub_gone_from_stripe', 'team', 'month', 3, 'active', false)
                    """)
            }
            let stripe = try #require(server.stripe)
            #expect(try await stripe.retrieveSubscription(subscriptionID).status == "trialing")
            // A purge now would leave it billing with nothing left to end it: the tenant is kept.
            let owner = [
                "DATABASE_URL": server.database.appURL.secretURLString, "DATABASE_OWNER_URL": server.database.ownerURL.secretURLString,
            ]
            let (kept, keptOutput, keptErrors) = try await Billingd.run(["tenants", "purge", "--retention-days", "0"], environment: owner)
            #expect(kept == 0, "\(keptErrors)")
            let keptLine = keptOutput.split(separator: "\n").first { $0.hasPrefix("kept \(tenant.uuidString.lowercased()): Stripe subscription(s) ") }
            #expect(keptLine?.contains(subscriptionID) == true && keptLine?.contains("sub_gone_from_stripe") == true, "\(keptOutput)")
            #expect(keptOutput.contains("purged 0 tenant(s), kept 1"))

            let report = try await server.database.withAppClient { database in
                try await Reconciler(
                    environment: try TestServer.configuration(server.database).environment(
                        database: database, logger: Logger(label: "test.reconcile"), stripe: stripe),
                    stripe: stripe, lookback: .seconds(60), subscriptionMaxAge: .seconds(86400)
                ).run()
            }
            #expect(report.refreshed == 2, "\(report)")
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_gone_from_stripe' AND status = 'canceled'") == 1)
            // Processed by a worker whose catalog no longer knows the subscription's price: that does not stop it.
            try await harness.drain(priceOverrides: ["STRIPE_PRICE_TEAM_MONTH": "price_team_month_2027"])
            #expect(try await stripe.retrieveSubscription(subscriptionID).status == "canceled")
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.subscriptions WHERE stripe_subscription_id = '\(subscriptionID)' AND status = 'canceled'") == 1)
            // Nothing is left for the next pass.
            let next = try await server.database.withAppClient { database in
                try await SubscriptionScans(database: database).liveSubscriptionsOfDeletedTenants(limit: 10).count
            }
            #expect(next == 0)
            let (purged, purgedOutput, _) = try await Billingd.run(["tenants", "purge", "--retention-days", "0"], environment: owner)
            #expect(purged == 0)
            #expect(purgedOutput.contains("purged 1 tenant(s)"), "\(purgedOutput)")
        }
    }
}

extension JSONValue {
    subscript(index: Int) -> JSONValue? {
        if case .array(let items) = self, items.indices.contains(index) { items[index] } else { nil }
    }
}

@Suite struct PlanChangeTests {
    @Test func anUpgradeAppliesNowADowngradeAtThePeriodsEnd() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "pro")

            // Upgrade by alias: now, and pro's single seat becomes team's minimum.
            let upgraded = try await client.rpc("billing.changePlan", ["plan": "archon"], token: admin)
            #expect(upgraded["result"]?["plan"] == "team", "\(upgraded)")
            #expect(upgraded["result"]?["seats"] == 3)
            #expect(upgraded["result"]?["pendingChange"] == .null)
            _ = try await client.rpc("billing.updateSeats", ["seats": 7], token: admin)
            // Month to year is an upgrade too.
            let yearly = try await client.rpc("billing.changePlan", ["plan": "team", "interval": "year"], token: admin)
            #expect(yearly["result"]?["interval"] == "year")
            #expect(yearly["result"]?["seats"] == 7)
            try await harness.deliverStandInEvents()

            // A downgrade waits: visible as the pending change, effective at the period's end.
            let downgraded = try await client.rpc("billing.changePlan", ["plan": "strategos", "interval": "year"], token: admin)
            #expect(downgraded["result"]?["plan"] == "team")
            #expect(downgraded["result"]?["pendingChange"]?["plan"] == "pro")
            #expect(downgraded["result"]?["pendingChange"]?["effectiveAt"] == downgraded["result"]?["currentPeriodEnd"])
            let periodEnd = try #require(downgraded["result"]?["currentPeriodEnd"]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) })

            let job = { (now: Date) in try await harness.runPlanChangeJob(at: now) }
            // Not earlier than an hour before the period's end; then, before the renewal bills the old price.
            #expect(try await job(periodEnd.addingTimeInterval(-7200)).isEmpty)
            #expect(try await job(periodEnd.addingTimeInterval(-60)) == [tenant])
            #expect(try await job(periodEnd.addingTimeInterval(60)).isEmpty)
            let after = try await client.rpc("billing.status", token: admin)
            #expect(after["result"]?["plan"] == "pro")
            #expect(after["result"]?["seats"] == 1)
            #expect(after["result"]?["pendingChange"] == .null)
            // Stripe has the change: its own events agree.
            try await harness.deliverStandInEvents()
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["plan"] == "pro")
            #expect(try await harness.count("SELECT count(*)::int FROM billing.audit_events WHERE action = 'plan.downgraded' AND actor_type = 'system'") == 1)
        }
    }

    @Test func movingToFreeCancelsAtThePeriodsEndAndChangingBackDropsAPendingChange() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 4)
            let scheduled = try await client.rpc("billing.changePlan", ["plan": "pro"], token: admin)
            #expect(scheduled["result"]?["pendingChange"]?["plan"] == "pro")
            let back = try await client.rpc("billing.changePlan", ["plan": "team"], token: admin)
            #expect(back["result"]?["pendingChange"] == .null)
            let free = try await client.rpc("billing.changePlan", ["plan": "free"], token: admin)
            #expect(free["result"]?["cancelAtPeriodEnd"] == true)
            #expect(free["result"]?["pendingChange"]?["plan"] == "free")
            // Choosing team again undoes the cancellation that leaving for free scheduled.
            let stay = try await client.rpc("billing.changePlan", ["plan": "team"], token: admin)
            #expect(stay["result"]?["cancelAtPeriodEnd"] == false, "\(stay)")
            #expect(stay["result"]?["pendingChange"] == .null)
            _ = try await client.rpc("billing.changePlan", ["plan": "free"], token: admin)
            let resumed = try await client.rpc("billing.resume", token: admin)
            #expect(resumed["result"]?["cancelAtPeriodEnd"] == false)
            #expect(resumed["result"]?["pendingChange"] == .null)
            let none = try await client.rpc("billing.changePlan", ["plan": "team"], token: try await server.token(.admin, tenant: try await server.provision(client)))
            #expect(none.errorName == "PRECONDITION_FAILED")
            let unknown = try await client.rpc("billing.changePlan", ["plan": "platinum"], token: admin)
            #expect(unknown["error"]?["data"]?["field"] == "plan")
        }
    }
}

@Suite struct TenantLifecycleTests {
    @Test func aDeletedTenantIsCanceledFirstHiddenFromItsUsersReadableToOperatorsThenPurged() async throws {
        // Outbound events are on (to an endpoint that is down), so the tenant has outbox rows to purge too.
        let extra = EventHarness.extra.merging([
            "BILLING_EVENTS_URL": "http://127.0.0.1:9/events", "BILLING_EVENTS_SECRET": "events-secret-for-tests-0123",
        ]) { $1 }
        try await TestServer.run(extra: extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server, extra: extra)
            let tenant = try await server.provision(client, name: "Doomed Corp")
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            try await harness.topUp(tenant, credits: 600)
            // An open top-up checkout that must not be payable after the deletion.
            let pendingTopUp = try await client.rpc("billing.topUp", ["credits": 700], token: try await server.token(.admin, tenant: tenant))
            let openSession = try #require(pendingTopUp["result"]?["sessionId"]?.stringValue)
            #expect(try await harness.count("SELECT count(*)::int FROM billing.outbox_events WHERE tenant_id = '\(tenant)'") > 0)
            let admin = try await server.token(.admin, tenant: tenant)
            let service = try await server.token(.service)
            let operatorToken = try await server.token(.operator)

            let deleted = try await client.rpc("tenants.delete", ["tenantId": .string(tenant.uuidString)], token: service)
            #expect(deleted["result"]?["deletedAt"]?.stringValue != nil, "\(deleted)")
            #expect(deleted["result"]?["purgeAfter"]?.stringValue != nil)
            // The subscription was canceled at Stripe first.
            let subscriptionID: String? = try await harness.owner {
                try await $0.first("SELECT stripe_subscription_id FROM billing.subscriptions WHERE tenant_id = '\(tenant)'")
            }
            #expect(try await server.stripe!.retrieveSubscription(try #require(subscriptionID)).status == "canceled")
            #expect(try await server.stripe!.retrieveCheckoutSession(openSession).status == "expired")
            // Deleting again returns the first deletion.
            let again = try await client.rpc("tenants.delete", ["tenantId": .string(tenant.uuidString)], token: service)
            #expect(again["result"]?["deletedAt"] == deleted["result"]?["deletedAt"])

            // Its users get NOT_FOUND; operators still read its data.
            #expect(try await client.rpc("billing.status", token: admin).errorName == "NOT_FOUND")
            #expect(try await client.rpc("billing.credits", token: admin).errorName == "NOT_FOUND")
            let payments = try await client.rpc("billing.payments", ["tenantId": .string(tenant.uuidString)], token: operatorToken)
            #expect(payments["result"]?["payments"]?[0] != nil, "\(payments)")
            let audit = try await client.rpc("billing.auditLog", ["tenantId": .string(tenant.uuidString)], token: operatorToken)
            #expect(audit["result"]?["entries"]?[0]?["action"] == "tenant.deleted")

            // Operators find it by name, email and Stripe customer id.
            for query in ["doomed", "ACME.EXAMPLE", tenant.uuidString] {
                let found = try await client.rpc("tenants.list", ["query": .string(query)], token: operatorToken)
                guard case .array(let tenants)? = found["result"]?["tenants"] else { throw TestFailure("\(found)") }
                #expect(tenants.contains { $0["tenantId"] == .string(tenant.uuidString.lowercased()) }, "\(query)")
            }
            let got = try await client.rpc("tenants.get", ["tenantId": .string(tenant.uuidString)], token: operatorToken)
            #expect(got["result"]?["name"] == "Doomed Corp")
            #expect(got["result"]?["deletedAt"] == deleted["result"]?["deletedAt"])
            #expect(try await client.rpc("tenants.list", token: admin).errorName == "FORBIDDEN")

            // Purged (retention 0 days): every row of it is gone, other tenants' untouched.
            let other = try await server.provision(client, name: "Survivor")
            let (status, output, errors) = try await Billingd.run(["tenants", "purge", "--retention-days", "0"], environment: [
                "DATABASE_URL": server.database.appURL.secretURLString, "DATABASE_OWNER_URL": server.database.ownerURL.secretURLString,
            ])
            #expect(status == 0, "\(errors)")
            #expect(output.contains(tenant.uuidString.lowercased()))
            for table in ["tenants", "subscriptions", "payments", "credit_ledger", "audit_events", "top_ups", "stripe_events", "outbox_events"] {
                let column = table == "tenants" ? "id" : "tenant_id"
                #expect(try await harness.count("SELECT count(*)::int FROM billing.\(table) WHERE \(column) = '\(tenant)'") == 0, "\(table)")
            }
            #expect(try await harness.count("SELECT count(*)::int FROM billing.tenants WHERE id = '\(other)'") == 1)
            #expect(try await client.rpc("tenants.get", ["tenantId": .string(tenant.uuidString)], token: operatorToken).errorName == "NOT_FOUND")
        }
    }
}
