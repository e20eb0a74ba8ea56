import BillingDevSupport
import Foundation
import HummingbirdTesting
import JSONRPC
import Testing

/// The events real Stripe sends that matter to billing beyond subscriptions and payments: payment methods changed in
/// the portal, invoices voided or written off there, invoice payments, canceled PaymentIntents.
@Suite struct StripeEventCoverageTests {
    /// An event with `data.previous_attributes`, as Stripe sends `*.updated` and `payment_method.detached`.
    static func event(_ id: String, _ type: String, _ object: [String: Any], created: Int, previous: [String: Any]) -> [UInt8] {
        var event = StripeFixtures.resources["event"] as? [String: Any] ?? [:]
        event["id"] = id
        event["type"] = type
        event["created"] = created
        event["livemode"] = false
        event["data"] = ["object": object, "previous_attributes": previous]
        return Array((try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data())
    }

    func defaultMethod(_ harness: EventHarness, _ tenant: UUID) async throws -> String? {
        try await harness.owner { try await $0.first("SELECT coalesce(default_payment_method, 'none') FROM billing.tenants WHERE id = '\(tenant)'") }
    }

    @Test func aCardReplacedOrRemovedInThePortalIsNoLongerCharged() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_portal")
            let now = Int(Date().timeIntervalSince1970)
            let customer = { (method: Any) in
                EventHarness.object("customer", ["id": "cus_portal", "invoice_settings": [
                    "default_payment_method": method, "custom_fields": NSNull(), "footer": NSNull(), "rendering_options": NSNull(),
                ] as [String: Any]])
            }
            // The portal makes another card the default.
            try await harness.deliverInTurn([
                Self.event("evt_cu_1", "customer.updated", customer("pm_new_card"), created: now - 60,
                           previous: ["invoice_settings": ["default_payment_method": NSNull()]]),
            ])
            #expect(try await harness.eventStatus("evt_cu_1") == "processed")
            #expect(try await defaultMethod(harness, tenant) == "pm_new_card")
            // An older event naming another card changes nothing.
            try await harness.deliverInTurn([
                Self.event("evt_cu_0", "customer.updated", customer("pm_old_card"), created: now - 120, previous: [:]),
            ])
            #expect(try await harness.eventStatus("evt_cu_0") == "stale")
            #expect(try await defaultMethod(harness, tenant) == "pm_new_card")

            // The card is removed: the detached payment method no longer names its customer; previous_attributes do.
            let detached = EventHarness.object("payment_method", ["id": "pm_new_card", "customer": NSNull()])
            try await harness.deliverInTurn([
                Self.event("evt_pm_1", "payment_method.detached", detached, created: now - 30, previous: ["customer": "cus_portal"]),
            ])
            #expect(try await harness.eventStatus("evt_pm_1") == "processed")
            #expect(try await defaultMethod(harness, tenant) == "none")
            let actions: [String] = try await harness.owner { proxy in
                var out: [String] = []
                for action in ["payment_method.default_changed", "payment_method.removed"] {
                    let count: Int = try await proxy.first("SELECT count(*)::int FROM billing.audit_events WHERE action = '\(action)' AND tenant_id = '\(tenant)'") ?? 0
                    out.append("\(action) \(count)")
                }
                return out
            }
            #expect(actions == ["payment_method.default_changed 1", "payment_method.removed 1"])

            // The network updated a card's expiry: same id, recorded in the audit trail.
            let updated = EventHarness.object("payment_method", ["id": "pm_other", "customer": "cus_portal"])
            try await harness.deliverInTurn([EventHarness.event("evt_pm_2", "payment_method.automatically_updated", updated, created: now)])
            #expect(try await harness.eventStatus("evt_pm_2") == "processed")
            #expect(try await harness.count("SELECT count(*)::int FROM billing.audit_events WHERE action = 'payment_method.updated'") == 1)
        }
    }

    /// With Stripe configured, `customer.updated` reads the customer from Stripe: a default changed in the Dashboard
    /// applies, and an older event processed late (naming the card that was replaced) brings nothing back.
    @Test func aDefaultChangedAtStripeAppliesAndALateOlderEventIsReadAsStripeHasItNow() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            try await harness.saveCard(tenant)
            #expect(try await defaultMethod(harness, tenant) == "pm_card_visa")
            let stripe = try #require(server.stripe)
            let customerID: String = try #require(try await harness.owner {
                try await $0.first("SELECT stripe_customer_id FROM billing.tenants WHERE id = '\(tenant)'")
            })
            // A card saved before, as the customer's first event still names it.
            let before = String(decoding: try await stripe.sendRaw(.get, "/v1/customers/\(customerID)"), as: UTF8.self)
            _ = try await stripe.setDefaultPaymentMethod(customer: customerID, paymentMethod: "pm_card_mastercard", idempotencyKey: UUID().uuidString)
            try await harness.deliverStandInEvents()
            #expect(try await defaultMethod(harness, tenant) == "pm_card_mastercard")

            let late = try #require(try JSONSerialization.jsonObject(with: Data(before.utf8)) as? [String: Any])
            try await harness.deliverInTurn([
                Self.event("evt_cu_late", "customer.updated", late, created: Int(Date().timeIntervalSince1970) + 5, previous: [:]),
            ])
            #expect(try await harness.eventStatus("evt_cu_late") == "processed")
            #expect(try await defaultMethod(harness, tenant) == "pm_card_mastercard")
        }
    }

    /// A payload escaping U+0000 (jsonb cannot hold it) is kept with U+FFFD in its place, answered 200 and processed,
    /// not refused with a 503 that Stripe would retry for days.
    @Test func anEventCarryingANulCharacterIsStoredAndProcessed() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_nul")
            let customer = EventHarness.object("customer", ["id": "cus_nul", "name": "Acme\u{0}Corp", "invoice_settings": [
                "default_payment_method": "pm_nul_card", "custom_fields": NSNull(), "footer": NSNull(), "rendering_options": NSNull(),
            ] as [String: Any]])
            let body = Self.event("evt_nul", "customer.updated", customer, created: Int(Date().timeIntervalSince1970), previous: [:])
            #expect(String(decoding: body, as: UTF8.self).contains("\\u0000"))
            try await harness.deliverInTurn([body])
            #expect(try await harness.eventStatus("evt_nul") == "processed")
            #expect(try await defaultMethod(harness, tenant) == "pm_nul_card")
            let stored: String? = try await harness.owner {
                try await $0.first("SELECT payload->'data'->'object'->>'name' FROM billing.stripe_events WHERE event_id = 'evt_nul'")
            }
            #expect(stored == "Acme\u{FFFD}Corp")
        }
    }

    @Test(arguments: [("invoice.voided", "void"), ("invoice.marked_uncollectible", "uncollectible")])
    func aStripeInvoiceClosedAtStripeIsNotLeftOpen(type: String, status: String) async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_inv")
            let now = Int(Date().timeIntervalSince1970)
            func invoice(_ status: String) -> [String: Any] {
                EventHarness.object("invoice", ["id": "in_closed", "customer": "cus_inv", "status": status, "amount_due": 1500,
                                                "amount_paid": 0, "amount_remaining": status == "open" ? 1500 : 0])
            }
            try await harness.deliverInTurn([
                EventHarness.event("evt_in_1", "invoice.finalized", invoice("open"), created: now - 100),
                EventHarness.event("evt_in_2", "invoice.overdue", invoice("open"), created: now - 50),
                EventHarness.event("evt_in_3", type, invoice(status), created: now - 10),
            ])
            for id in ["evt_in_1", "evt_in_2", "evt_in_3"] { #expect(try await harness.eventStatus(id) == "processed") }
            let row: String? = try await harness.owner {
                try await $0.first("SELECT status || ' ' || coalesce(payment_problem, '-') FROM billing.stripe_invoices WHERE tenant_id = '\(tenant)' AND invoice_id = 'in_closed'")
            }
            #expect(row == "\(status) -")
            let listed = try await client.rpc("billing.invoices", token: try await server.token(.member, tenant: tenant))
            #expect(listed["result"]?["invoices"]?[0]?["status"]?.stringValue == status)
        }
    }

    /// Current API versions link an invoice to its payment only through `invoice_payment.paid`; it may arrive before
    /// the payment is recorded, and waits for it.
    @Test func anInvoicePaymentLinksTheInvoiceToItsPaymentWhicheverArrivesFirst() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_ip")
            let now = Int(Date().timeIntervalSince1970)
            let payment = EventHarness.object("invoice_payment", [
                "id": "inpay_1", "invoice": "in_sub_1", "amount_paid": 1500, "currency": "usd", "status": "paid",
                "payment": ["type": "payment_intent", "payment_intent": "pi_sub_1"],
            ])
            try await harness.deliverInTurn([EventHarness.event("evt_ip_1", "invoice_payment.paid", payment, created: now - 20)])
            #expect(try await harness.eventStatus("evt_ip_1") == "unresolved")

            let charge = EventHarness.object("charge", [
                "id": "ch_sub_1", "payment_intent": "pi_sub_1", "customer": "cus_ip", "amount": 1500, "amount_refunded": 0,
                "currency": "usd", "metadata": [:] as [String: String], "status": "succeeded", "paid": true, "refunds": NSNull(),
            ])
            try await harness.deliverInTurn([EventHarness.event("evt_ch_1", "charge.succeeded", charge, created: now - 10)])
            #expect(try await harness.eventStatus("evt_ch_1") == "processed")
            #expect(try await harness.eventStatus("evt_ip_1") == "processed")
            let linked: String? = try await harness.owner {
                try await $0.first("SELECT coalesce(stripe_invoice_id, '-') || ' ' || purpose FROM billing.payments WHERE tenant_id = '\(tenant)' AND payment_intent_id = 'pi_sub_1'")
            }
            #expect(linked == "in_sub_1 subscription")
        }
    }

    @Test func aCanceledTopUpPaymentFailsTheTopUpAndProcessingChangesNothing() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let started = try await client.rpc("billing.topUp", ["credits": 1000], token: try await server.token(.admin, tenant: tenant))
            let sessionID = try #require(started["result"]?["sessionId"]?.stringValue, "\(started)")
            let topUp: String? = try await harness.owner { try await $0.first("SELECT top_up_id::text FROM billing.top_ups WHERE session_id = '\(sessionID)'") }
            let now = Int(Date().timeIntervalSince1970)
            func intent(_ status: String) -> [String: Any] {
                EventHarness.object("payment_intent", [
                    "id": "pi_topup_x", "status": status, "amount": 1000, "currency": "usd", "customer": NSNull(),
                    "cancellation_reason": status == "canceled" ? "abandoned" : NSNull(),
                    "metadata": ["tenant_id": tenant.uuidString.lowercased(), "purpose": "credit_topup", "top_up_id": topUp ?? ""],
                ])
            }
            try await harness.deliverInTurn([
                EventHarness.event("evt_pi_p", "payment_intent.processing", intent("processing"), created: now - 20),
                EventHarness.event("evt_pi_c", "payment_intent.canceled", intent("canceled"), created: now - 10),
            ])
            #expect(try await harness.eventStatus("evt_pi_p") == "processed")
            #expect(try await harness.eventStatus("evt_pi_c") == "processed")
            let state = try await client.rpc("billing.checkoutSession", ["sessionId": .string(sessionID)], token: try await server.token(.member, tenant: tenant))
            #expect(state["result"]?["topUp"]?["status"]?.stringValue == "failed")
            #expect(try await harness.balance(tenant).0 == 0)
        }
    }

    @Test func aFailedCardSetupIsAuditedAndChangesNothing() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await harness.tenant(customer: "cus_setup")
            let intent = EventHarness.object("setup_intent", [
                "id": "seti_failed", "customer": "cus_setup", "status": "requires_payment_method", "payment_method": NSNull(),
                "last_setup_error": ["type": "card_error", "code": "card_declined", "message": "Your card was declined."],
            ])
            try await harness.deliverInTurn([EventHarness.event("evt_si_f", "setup_intent.setup_failed", intent, created: Int(Date().timeIntervalSince1970))])
            #expect(try await harness.eventStatus("evt_si_f") == "processed")
            #expect(try await defaultMethod(harness, tenant) == "none")
            let failure: String? = try await harness.owner {
                try await $0.first("SELECT after->>'failure' FROM billing.audit_events WHERE action = 'payment_method.setup_failed' AND tenant_id = '\(tenant)'")
            }
            #expect(failure == "card_declined: Your card was declined.")
        }
    }
}
