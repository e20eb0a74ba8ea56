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
}
