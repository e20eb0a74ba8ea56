import BillingCore
import BillingDevSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import JSONRPC
import NIOCore
import Testing

/// `/trpc/*` answering requests shaped as tRPC's HTTP RPC specification shows (v11, no transformer).
@Suite struct TRPCTests {
    func get(_ client: some TestClientProtocol, _ paths: String, input: String? = nil, batch: Bool = false, token: String? = nil) async throws -> (Int, JSONValue) {
        var components = URLComponents()
        components.path = "/trpc/\(paths)"
        var items: [URLQueryItem] = []
        if batch { items.append(URLQueryItem(name: "batch", value: "1")) }
        if let input { items.append(URLQueryItem(name: "input", value: input)) }
        components.queryItems = items.isEmpty ? nil : items
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        let uri = components.percentEncodedPath + (components.percentEncodedQuery.map { "?" + $0.replacingOccurrences(of: "+", with: "%2B") } ?? "")
        let response = try await client.execute(uri: uri, method: .get, headers: headers)
        return (Int(response.status.code), try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body)))
    }

    func post(_ client: some TestClientProtocol, _ path: String, body: String, token: String? = nil) async throws -> (Int, JSONValue) {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        let response = try await client.execute(uri: "/trpc/\(path)", method: .post, headers: headers, body: ByteBuffer(string: body))
        return (Int(response.status.code), try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body)))
    }

    @Test func queriesAndMutationsWithTheirEnvelopes() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let member = try await server.token(.member, tenant: tenant)

            // GET /trpc/billing.plans: {"result":{"data":...}}
            let (plansStatus, plans) = try await get(client, "billing.plans")
            #expect(plansStatus == 200)
            #expect(plans["result"]?["data"]?["defaultPlan"] == "free")

            // GET /trpc/billing.status?input={} with the bearer token.
            let (statusCode, status) = try await get(client, "billing.status", input: "{}", token: member)
            #expect(statusCode == 200)
            #expect(status["result"]?["data"]?["plan"] == "free")

            // A mutation is a POST with the input as the body.
            let (consumed, consume) = try await post(client, "credits.consume", body: """
                {"tenantId":"\(tenant.uuidString)","amount":1,"reason":"x","idempotencyKey":"k"}
                """, token: try await server.token(.service))
            #expect(consumed == 402)
            #expect(consume["error"]?["code"] == -32002)
            #expect(consume["error"]?["data"]?["code"] == "PAYMENT_REQUIRED")
            #expect(consume["error"]?["data"]?["httpStatus"] == 402)
            #expect(consume["error"]?["data"]?["path"] == "credits.consume")

            // Invalid input: BAD_REQUEST, -32600, 400, with the field.
            let (badStatus, bad) = try await post(client, "billing.topUp", body: #"{"credits":"lots"}"#, token: try await server.token(.admin, tenant: tenant))
            #expect(badStatus == 400)
            #expect(bad["error"]?["code"] == -32600)
            #expect(bad["error"]?["data"]?["code"] == "BAD_REQUEST")
            #expect(bad["error"]?["data"]?["field"] == "credits")

            // The wrong verb is METHOD_NOT_SUPPORTED (405); an unknown path NOT_FOUND (404); no token UNAUTHORIZED (401).
            #expect(try await post(client, "billing.status", body: "{}", token: member).0 == 405)
            #expect(try await get(client, "billing.topUp", input: #"{"credits":500}"#, token: member).0 == 405)
            let (missing, unknown) = try await get(client, "billing.nothing")
            #expect(missing == 404)
            #expect(unknown["error"]?["data"]?["code"] == "NOT_FOUND")
            #expect(try await get(client, "billing.status").0 == 401)
        }
    }

    @Test func batchesAnswerArraysAnd207WhenOutcomesDiffer() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let member = try await server.token(.member, tenant: tenant)
            // GET /trpc/billing.plans,billing.status?batch=1&input={"0":{},"1":{}}
            let (allStatus, all) = try await get(
                client, "billing.plans,billing.status", input: #"{"0":{},"1":{}}"#, batch: true, token: member)
            #expect(allStatus == 200)
            #expect(all[0]?["result"]?["data"]?["defaultPlan"] == "free")
            #expect(all[1]?["result"]?["data"]?["tenantId"] == .string(tenant.uuidString.lowercased()))

            // A member may read status but not the audit log: mixed outcomes are 207, each in its place.
            let (mixedStatus, mixed) = try await get(client, "billing.status,billing.auditLog", input: #"{"0":{}}"#, batch: true, token: member)
            #expect(mixedStatus == 207)
            #expect(mixed[0]?["result"]?["data"]?["plan"] == "free")
            #expect(mixed[1]?["error"]?["data"]?["code"] == "FORBIDDEN")
            #expect(mixed[1]?["error"]?["data"]?["path"] == "billing.auditLog")

            // Batched mutations: POST with the inputs by index.
            let service = try await server.token(.service)
            let (grantStatus, grants) = try await post(client, "credits.grant,credits.consume?batch=1", body: """
                {"0":{"tenantId":"\(tenant.uuidString)","amount":5,"reason":"x","idempotencyKey":"a"},
                 "1":{"tenantId":"\(tenant.uuidString)","amount":1,"reason":"y","idempotencyKey":"b"}}
                """, token: service)
            #expect(grantStatus == 207)
            #expect(grants[0]?["error"]?["data"]?["code"] == "FORBIDDEN")
            #expect(grants[1]?["error"]?["data"]?["code"] == "PAYMENT_REQUIRED")
        }
    }

    /// A batch beyond `/rpc`'s cap (100) is refused whole with tRPC's error envelope, before anything in it runs:
    /// 500 paths without a token answer a short 400, and 101 grants grant nothing.
    @Test func aBatchBeyondTheCapIsRefusedWholeAndRunsNothing() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let paths = Array(repeating: "rpc.discover", count: 500).joined(separator: ",")
            let started = ContinuousClock.now
            let (status, refused) = try await get(client, paths, batch: true)
            #expect(ContinuousClock.now - started < .seconds(1))
            #expect(status == 400)
            #expect(refused["error"]?["data"]?["code"] == "BAD_REQUEST")
            #expect(refused["error"]?["message"]?.stringValue?.contains("at most 100 calls (this one has 500)") == true, "\(refused)")

            let (capStatus, atCap) = try await get(client, Array(repeating: "billing.plans", count: 100).joined(separator: ","), batch: true)
            #expect(capStatus == 200)
            #expect(atCap[99]?["result"]?["data"]?["defaultPlan"] == "free")

            let operatorToken = try await server.token(.operator)
            let inputs = (0...100).map { #""\#($0)":{"tenantId":"\#(tenant.uuidString)","amount":5,"reason":"batch","idempotencyKey":"k\#($0)"}"# }
            let (grantStatus, grants) = try await post(
                client, Array(repeating: "credits.grant", count: 101).joined(separator: ",") + "?batch=1",
                body: "{" + inputs.joined(separator: ",") + "}", token: operatorToken)
            #expect(grantStatus == 400, "\(grants)")
            // Inputs are bounded as on /rpc.
            let (longStatus, long) = try await get(
                client, "billing.credits", input: #"{"cursor":""# + String(repeating: "c", count: 201) + #""}"#,
                token: try await server.token(.admin, tenant: tenant))
            #expect(longStatus == 400)
            #expect(long["error"]?["message"]?.stringValue?.contains("'cursor' is 201 characters long; at most 200 are allowed") == true, "\(long)")
            let (_, balance) = try await get(client, "billing.credits", token: try await server.token(.admin, tenant: tenant))
            #expect(balance["result"]?["data"]?["balance"]?["available"] == 0, "\(balance)")
        }
    }
}
