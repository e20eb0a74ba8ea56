import BillingCore
import Foundation
import HTTPTypes
import HummingbirdTesting
import JSONRPC
import NIOCore
import SnapshotTesting
import StripeAPI
import Testing

/// Whole answers of the main methods and of the webhook endpoint, pinned in `__Snapshots__/`: a change to any field's
/// name, type, presence or nullness shows as a diff. What varies from run to run (ids, times, cursors) is replaced by
/// placeholders first. A deliberate change is recorded by deleting the snapshot file and running the test again.
@Suite(.serialized) struct AnswerSnapshotTests {
    /// Pretty, key-sorted JSON with the varying values replaced: UUIDs, Stripe ids, times and cursors.
    static func scrubbed(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var text = String(decoding: try encoder.encode(value), as: UTF8.self)
        let replacements: [(String, String)] = [
            (#"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"#, "<uuid>"),
            (#"\b(cus|cs_test|cs|sub|pi|ch|re|in|seti|pm|evt|bps|clock)_[A-Za-z0-9]+"#, "<$1>"),
            (#"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z"#, "<time>"),
            (#"\b\d{13,}\b"#, "<number>"),
            (#"INV-\d+"#, "<invoice-number>"),
        ]
        for (pattern, template) in replacements {
            text = text.replacingOccurrences(of: pattern, with: template, options: .regularExpression)
        }
        return text
    }

    @Test func theMainMethodsAnswers() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let operatorToken = try await server.token(.operator)
            let service = try await server.token(.service, tenant: tenant)
            var answers: [(String, JSONValue)] = []
            func call(_ name: String, _ method: String, _ params: [String: JSONValue]? = nil, token: String?) async throws {
                answers.append((name, try await client.rpc(method, params, token: token)))
            }
            try await call("billing.plans", "billing.plans", token: nil)
            try await call("billing.status", "billing.status", token: admin)
            try await call("billing.entitlements", "billing.entitlements", token: admin)
            try await call("credits.grant", "credits.grant", ["tenantId": .string(tenant.uuidString), "amount": 500, "reason": "welcome",
                                                              "idempotencyKey": "grant-1"], token: operatorToken)
            try await call(
                "credits.consume", "credits.consume",
                ["tenantId": .string(tenant.uuidString), "amount": 120, "reason": "report", "idempotencyKey": "use-1"], token: service)
            try await call("billing.credits", "billing.credits", token: admin)
            try await call("billing.checkout", "billing.checkout", ["plan": "team", "seats": 3], token: admin)
            try await call("billing.topUp", "billing.topUp", ["credits": 1000], token: admin)
            try await call("billing.invoices", "billing.invoices", token: admin)
            try await call("billing.payments", "billing.payments", token: admin)
            try await call("billing.auditLog", "billing.auditLog", ["limit": 3], token: admin)
            try await call("tenants.get", "tenants.get", ["tenantId": .string(tenant.uuidString)], token: operatorToken)
            try await call("error: no token", "billing.status", token: nil)
            try await call("error: bad params", "billing.updateSeats", ["seats": "many"], token: admin)
            try await call("error: unknown method", "billing.nothing", token: admin)
            for (name, answer) in answers {
                assertSnapshot(of: try Self.scrubbed(answer), as: .lines, named: name)
            }
        }
    }

    @Test func theWebhookEndpointsAnswers() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let harness = EventHarness(client: client, server: server)
            let event = EventHarness.event(
                "evt_snapshot", "customer.subscription.updated", EventHarness.subscription("sub_snapshot", customer: "cus_snapshot"),
                created: Int(Date().timeIntervalSince1970))
            let stored = try await harness.deliver(event)
            let again = try await harness.deliver(event)
            var forged: HTTPFields = [.contentType: "application/json"]
            forged[.init("Stripe-Signature")!] = "t=\(Int(Date().timeIntervalSince1970)),v1=" + String(repeating: "0", count: 64)
            let refused = try await client.execute(uri: "/webhooks/stripe", method: .post, headers: forged, body: ByteBuffer(bytes: event))
            for (name, response) in [("stored", stored), ("repeated", again), ("bad signature", refused)] {
                let body = String(buffer: response.body)
                assertSnapshot(of: "HTTP \(response.status.code)\n\(body)", as: .lines, named: name)
            }
        }
    }
}
