import BillingCore
import Foundation
import HummingbirdTesting
import JSONRPC
import StripeStandIn
import Testing

/// No endless free trials: a tenant gets one trial, whatever plan it was on, and a tenant with an overdue invoice
/// cannot start an invoice-billed subscription past it.
@Suite struct OneTrialTests {
    @Test func aTenantThatHadATrialGetsNoneOnItsNextCheckout() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.subscribe(tenant, plan: "team", seats: 3)
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["status"] == "trialing")
            let ended = try await client.rpc(
                "billing.cancel", ["tenantId": .string(tenant.uuidString), "atPeriodEnd": false], token: try await server.token(.operator))
            #expect(ended["result"]?["status"] == "canceled", "\(ended)")
            try await harness.deliverStandInEvents()

            // Back through Checkout, on another plan with a trial: charged today, no trial.
            let again = try await client.rpc("billing.checkout", ["plan": "pro"], token: admin)
            let session = try #require(again["result"]?["sessionId"]?.stringValue, "\(again)")
            let view = try #require(await server.standIn!.checkoutView(session))
            #expect(view.trialDays == 0)
            #expect(view.amountTotal == 1900)

            // Another tenant still gets its first trial.
            let other = try await server.provision(client, name: "Other")
            let first = try await client.rpc("billing.checkout", ["plan": "pro"], token: try await server.token(.admin, tenant: other))
            let firstSession = try #require(first["result"]?["sessionId"]?.stringValue, "\(first)")
            let firstView = try #require(await server.standIn!.checkoutView(firstSession))
            #expect(firstView.trialDays == 14)
        }
    }

    @Test func anOverdueInvoiceBlocksANewInvoiceBilledSubscription() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let dunning = try await DunningHarness.start(client, server, card: .saveDeclining)
            let t0 = Date()
            for day in [0.0, 1.01, 3.01, 5.01, 7.01] {
                _ = try await dunning.run(at: t0.addingTimeInterval(DunningHarness.day(day)))
            }
            let invoice = try await dunning.invoice()
            #expect(invoice["status"] == "overdue")
            let ended = try await client.rpc(
                "billing.cancel", ["tenantId": .string(dunning.tenant.uuidString), "atPeriodEnd": false], token: try await server.token(.operator))
            #expect(ended["error"] == nil, "\(ended)")
            let again = try await client.rpc("billing.subscribeByInvoice", ["plan": "enterprise", "seats": 5], token: dunning.admin)
            #expect(again.errorName == "PRECONDITION_FAILED", "\(again)")
            #expect(again.errorMessage.contains("invoice \(invoice["number"]?.stringValue ?? "?") is overdue"), "\(again)")
        }
    }
}
