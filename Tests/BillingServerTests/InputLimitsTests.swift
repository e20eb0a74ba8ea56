import BillingCore
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import StripeAPI
import JSONRPC
import Testing

/// Every string and list param is bounded before its method runs, on `/rpc` and `/trpc` alike, with an error that
/// names the param and the limit; the email check takes linear time.
@Suite struct InputLimitsTests {
    @Test func aHugeEmailIsRefusedNamingTheLimitAndNothingIsProvisioned() async throws {
        try await TestServer.run { client, server in
            let service = try await server.token(.service)
            let huge = String(repeating: "a", count: 16 * 1024) + "@example.com"
            let started = ContinuousClock.now
            let refused = try await client.rpc(
                "tenants.provision", ["name": "Huge", "email": .string(huge), "tenantId": .string(UUID().uuidString)], token: service)
            #expect(ContinuousClock.now - started < .milliseconds(500))
            #expect(refused.errorCode == -32602)
            #expect(refused["error"]?["data"]?["field"] == "email")
            #expect(refused.errorMessage.contains("'email' is \(huge.count) characters long; at most 254 are allowed"), "\(refused)")
            let listed = try await client.rpc("tenants.list", ["query": "Huge"], token: try await server.token(.operator))
            #expect(listed["result"]?["tenants"] == .array([]), "\(listed)")
        }
    }

    /// The shape that made the old pattern backtrack (`a@` then `b.` many times, then `@`): the 8,000-fold one that
    /// took 21 s of CPU is refused for its length, one within the length as not an address, both at once.
    @Test(arguments: [(8000, "at most 254 are allowed"), (120, "must be an email address")])
    func anEmailThatUsedToBacktrackIsRefusedAtOnce(repeats: Int, answer: String) async throws {
        try await TestServer.run { client, server in
            let crafted = "a@" + String(repeating: "b.", count: repeats) + "@"
            let started = ContinuousClock.now
            let refused = try await client.rpc("tenants.provision", ["name": "Crafted", "email": .string(crafted)], token: try await server.token(.service))
            #expect(ContinuousClock.now - started < .milliseconds(500))
            #expect(refused.errorCode == -32602)
            #expect(refused.errorMessage.contains(answer), "\(refused)")
        }
    }

    @Test func everyOtherStringAndListIsBoundedToo() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            // A param no table entry names: the default, 1,000 characters (the method never sees it).
            let unknown = try await client.rpc("billing.status", ["note": .string(String(repeating: "x", count: 1001))], token: admin)
            #expect(unknown.errorMessage.contains("'note' is 1001 characters long; at most 1000 are allowed"), "\(unknown)")
            // A key of 256 characters.
            let key = String(repeating: "k", count: 256)
            let keyed = try await client.rpc("billing.topUp", ["credits": 500, "idempotencyKey": .string(key)], token: admin)
            #expect(keyed.errorMessage.contains("'idempotencyKey' is 256 characters long; at most 255 are allowed"), "\(keyed)")
            // A list of 101 entries, and values nested past 8 levels.
            let long = try await client.rpc("billing.status", ["items": .array(Array(repeating: 1, count: 101))], token: admin)
            #expect(long.errorMessage.contains("'items' has 101 entries; at most 100 are allowed"), "\(long)")
            var deep: JSONValue = 1
            for _ in 0..<10 { deep = .array([deep]) }
            let nested = try await client.rpc("billing.status", ["deep": deep], token: admin)
            #expect(nested.errorMessage.contains("nests deeper than 8 levels"), "\(nested)")
        }
    }

    /// Found by `make fuzz`: a NUL character in any string param failed on storing (PostgreSQL's text cannot hold it)
    /// as an internal error; it is refused before the method runs, naming the param. An operator's or service's call
    /// naming a tenant never provisioned is NOT_FOUND from the rate-limited methods too, not a foreign-key failure.
    @Test func aNulCharacterAndAnUnknownTenantAreTheCallersErrors() async throws {
        try await TestServer.run(stripe: true) { client, server in
            let tenant = try await server.provision(client)
            let consumed = try await client.rpc(
                "credits.consume", ["tenantId": .string(tenant.uuidString), "amount": 1, "reason": "a\u{0}b", "idempotencyKey": "nul"],
                token: try await server.token(.service))
            #expect(consumed.errorCode == -32602, "\(consumed)")
            #expect(consumed["error"]?["data"]?["field"] == "reason")
            #expect(consumed.errorMessage.contains("NUL character"), "\(consumed)")
            let listed = try await client.rpc("tenants.list", ["query": "\u{0}"], token: try await server.token(.operator))
            #expect(listed["error"]?["data"]?["field"] == "query", "\(listed)")
            for method in ["billing.resume", "billing.portal", "billing.retryInvoice"] {
                var params: [String: JSONValue] = ["tenantId": .string(UUID().uuidString)]
                if method == "billing.retryInvoice" { params["invoiceId"] = .string(UUID().uuidString) }
                let unknown = try await client.rpc(method, params, token: try await server.token(.operator))
                #expect(unknown.errorName == "NOT_FOUND", "\(method): \(unknown)")
            }
        }
    }

    /// Also found by `make fuzz`: the least integer as a consumption crashed the server (negated before it was
    /// checked); a body of values nested hundreds deep took a minute of CPU to decode; a NUL in a token's subject or
    /// in a signed event's id or type could never be stored.
    @Test func theFuzzersOtherFindingsAreAnsweredAtOnce() async throws {
        try await TestServer.run(extra: EventHarness.extra) { client, server in
            let tenant = try await server.provision(client)
            let least = try await client.post(
                #"{"jsonrpc":"2.0","id":1,"method":"credits.consume","params":{"tenantId":"\#(tenant)","amount":-9223372036854775808,"reason":"x","idempotencyKey":"k"}}"#,
                token: try await server.token(.service))
            let answer = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: least.body))
            #expect(answer["error"]?["data"]?["field"] == "amount", "\(answer)")
            #expect(try await client.rpc("billing.status", token: try await server.token(.member, tenant: tenant))["result"] != nil)

            let deep = "[" + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "]"
            let started = ContinuousClock.now
            let refused = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: try await client.post(deep).body))
            #expect(ContinuousClock.now - started < .seconds(1))
            #expect(refused.errorCode == -32600, "\(refused)")
            #expect(refused.errorMessage.contains("deeper than 64 levels"), "\(refused)")
            let trpc = try await client.execute(
                uri: "/trpc/billing.plans?input=" + String(repeating: "%5B", count: 100) + String(repeating: "%5D", count: 100), method: .get)
            #expect(trpc.status == .badRequest)

            let nul = try await server.tokens.issue(role: .admin, tenant: tenant, subject: "a\u{0}b", ttl: .seconds(60))
            let unauthorized = try await client.rpc("billing.status", token: nul)
            #expect(unauthorized.errorName == "UNAUTHORIZED", "\(unauthorized)")
            #expect(unauthorized.errorMessage.contains("sub claim"), "\(unauthorized)")

            let harness = EventHarness(client: client, server: server)
            let badID = Array(#"{"id":"evt_\u0000","object":"event","type":"customer.updated","created":1,"livemode":false,"data":{"object":{}}}"#.utf8)
            var headers: HTTPFields = [.contentType: "application/json"]
            headers[.init("Stripe-Signature")!] = WebhookSignature.header(
                body: badID, secrets: [EventHarness.secret], timestamp: Int(Date().timeIntervalSince1970))
            let rejected = try await client.execute(uri: "/webhooks/stripe", method: .post, headers: headers, body: ByteBuffer(bytes: badID))
            #expect(rejected.status == .badRequest, "\(String(buffer: rejected.body))")
            let badType = Array(#"{"id":"evt_nul_type","object":"event","type":"customer.\u0000","created":1,"livemode":false,"data":{"object":{}}}"#.utf8)
            _ = try await harness.deliver(badType)
            try await harness.drain()
            #expect(try await harness.eventStatus("evt_nul_type") == "ignored")
            // No usable event, and the reason quotes its object, NUL and all: stored as ignored, not 503 for ever.
            _ = try await harness.deliver(Array(#"{"id":"evt_nul_object","object":"\u0000"}"#.utf8))
            #expect(try await harness.eventStatus("evt_nul_object") == "ignored")
        }
    }
}
