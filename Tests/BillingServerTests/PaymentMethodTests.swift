import BillingDevSupport
import Foundation
import HummingbirdTesting
import JSONRPC
import StripeStandIn
import Testing

/// Saving a card through Checkout in setup mode, for the invoices this server charges off-session.
@Suite struct PaymentMethodTests {
    func defaultMethod(_ harness: EventHarness, _ tenant: UUID) async throws -> String? {
        try await harness.owner { try await $0.first("SELECT coalesce(default_payment_method, 'none') FROM billing.tenants WHERE id = '\(tenant)'") }
    }

    @Test func aCardSavedInSetupModeBecomesTheDefaultOnceStripeConfirmsIt() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let started = try await client.rpc("billing.setupPaymentMethod", token: admin)
            let sessionID = try #require(started["result"]?["sessionId"]?.stringValue, "\(started)")
            let session = try await server.stripe!.retrieveCheckoutSession(sessionID)
            #expect(session.mode == "setup")
            // Nothing is recorded before Stripe confirms it.
            #expect(try await defaultMethod(harness, tenant) == "none")

            // The person saves a card that will be declined when charged (the stand-in's hosted page offers it).
            _ = await server.standIn!.complete(sessionID, outcome: .saveDeclining)
            try await harness.deliverStandInEvents()
            #expect(try await defaultMethod(harness, tenant) == "pm_card_chargeCustomerFail")
            let customerID = try #require(session.customer?.id)
            let customer = try await server.stripe!.sendRaw(.get, "/v1/customers/\(customerID)")
            let decoded = try JSONDecoder().decode(JSONValue.self, from: customer)
            #expect(decoded["invoice_settings"]?["default_payment_method"] == "pm_card_chargeCustomerFail")
            // Both events (the session's completion and the SetupIntent's) record it once.
            #expect(try await harness.count("SELECT count(*)::int FROM billing.audit_events WHERE action = 'payment_method.saved'") == 1)

            // A later card replaces it.
            let again = try await client.rpc("billing.setupPaymentMethod", token: admin)
            _ = await server.standIn!.complete(try #require(again["result"]?["sessionId"]?.stringValue), outcome: .pay)
            try await harness.deliverStandInEvents()
            #expect(try await defaultMethod(harness, tenant) == "pm_card_visa")
            #expect(try await client.rpc("billing.setupPaymentMethod", token: try await server.token(.member, tenant: tenant)).errorName == "FORBIDDEN")
        }
    }
}
