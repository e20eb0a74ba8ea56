import BillingCore
import Foundation
import HummingbirdTesting
import JSONRPC
import Testing

/// The methods that call Stripe on every request are limited per tenant by token buckets in PostgreSQL, shared by
/// every server process, and say when to come back.
@Suite struct RateLimitTests {
    static let extra = EventHarness.extra.merging([
        "BILLING_RATE_LIMIT_PORTAL_PER_MINUTE": "2", "BILLING_RATE_LIMIT_CHANGES_PER_MINUTE": "2",
    ]) { $1 }

    @Test func thePortalAndSubscriptionChangesAreLimitedPerTenantAcrossServers() async throws {
        let clock = ServerClock()
        try await TestServer.run(extra: Self.extra, stripe: true, now: { clock.now }) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            for _ in 0..<2 { #expect(try await client.rpc("billing.portal", token: admin)["result"]?["url"] != nil) }
            let refused = try await client.rpc("billing.portal", token: admin)
            #expect(refused.errorName == "TOO_MANY_REQUESTS", "\(refused)")
            #expect(refused.errorMessage.contains("billing.portal is limited to 2 calls a minute per tenant"))
            #expect(refused["error"]?["data"]?["retryAfter"] == 30, "\(refused)")
            // Another tenant has a bucket of its own.
            let other = try await server.provision(client, name: "Other")
            #expect(try await client.rpc("billing.portal", token: try await server.token(.admin, tenant: other))["result"]?["url"] != nil)
            // A second server on the same database shares the bucket.
            try await TestServer.run(extra: Self.extra, stripe: true, database: server.database, now: { clock.now }, standIn: { _ in }) { second, _ in
                let shared = try await second.rpc("billing.portal", token: admin)
                #expect(shared.errorName == "TOO_MANY_REQUESTS", "\(shared)")
            }
            // Half a minute on, one token is back.
            clock.set(Int(clock.now.timeIntervalSince1970) + 31)
            #expect(try await client.rpc("billing.portal", token: admin)["result"]?["url"] != nil)

            // Changes: three resumes spend the two tokens (the first two are answered as resume answers a subscription
            // not cancelling), and the third is refused before anything is looked at.
            try await harness.subscribe(tenant, plan: "pro")
            var answers: [JSONValue] = []
            for _ in 0..<3 { answers.append(try await client.rpc("billing.resume", token: admin)) }
            #expect(answers.prefix(2).allSatisfy { $0.errorName == "PRECONDITION_FAILED" }, "\(answers)")
            #expect(answers[2].errorName == "TOO_MANY_REQUESTS", "\(answers[2])")
        }
    }

    /// Operators' money paths are limited per tenant too: refunds (taken when a new refund is recorded, so a repeat
    /// answered with the earlier refund takes none) and invoice voids and retries (taken before anything is read).
    @Test func refundsAndInvoiceActionsAreLimitedPerTenant() async throws {
        let extra = EventHarness.extra.merging([
            "BILLING_RATE_LIMIT_REFUNDS_PER_MINUTE": "1", "BILLING_RATE_LIMIT_INVOICE_ACTIONS_PER_MINUTE": "1",
        ]) { $1 }
        try await TestServer.run(extra: extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            try await harness.topUp(tenant, credits: 1000)
            let payment: String = try #require(try await harness.owner { try await $0.first("SELECT payment_id FROM billing.payments WHERE tenant_id = '\(tenant)'") })
            let operatorToken = try await server.token(.operator)
            let refund = { @Sendable (amount: Int) async throws -> JSONValue in
                try await client.rpc(
                    "billing.refund", ["tenantId": .string(tenant.uuidString), "paymentId": .string(payment), "amount": .integer(amount)],
                    token: operatorToken)
            }
            #expect(try await refund(100)["result"]?["refundId"] != nil)
            // The same refund again is its answer, not a new one: no token.
            #expect(try await refund(100)["result"]?["replayed"] == true)
            let second = try await refund(200)
            #expect(second.errorName == "TOO_MANY_REQUESTS", "\(second)")
            #expect(second.errorMessage.contains("billing.refund is limited to 1 calls a minute per tenant"), "\(second)")
            #expect(await server.standIn!.count(of: "refund") == 1)

            let void = { @Sendable () async throws -> JSONValue in
                try await client.rpc("billing.voidInvoice", ["tenantId": .string(tenant.uuidString), "invoiceId": .string(UUID().uuidString)], token: operatorToken)
            }
            #expect(try await void().errorName == "NOT_FOUND")
            let limited = try await void()
            #expect(limited.errorName == "TOO_MANY_REQUESTS", "\(limited)")
            #expect(limited["error"]?["data"]?["retryAfter"] != nil, "\(limited)")
        }
    }
}
