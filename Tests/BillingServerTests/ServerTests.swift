import Billing
import BillingCore
import BillingServer
import BillingStore
import BillingDevSupport
import Foundation
import Glibc
import Hummingbird
import HummingbirdTesting
import JSONRPC
import Logging
import NIOCore
import Testing

@Suite struct HTTPSurfaceTests {
    @Test func wrongContentTypeIs415WithAJSONRPCError() async throws {
        try await TestServer.run { client, _ in
            let response = try await client.post(#"{"jsonrpc":"2.0","method":"billing.plans","id":1}"#, contentType: "text/plain")
            #expect(response.status == .unsupportedMediaType)
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
            #expect(body["id"] == .null)
            #expect(body.errorCode == -32015)
            #expect(body.errorName == "UNSUPPORTED_MEDIA_TYPE")
            #expect(body["error"]?["message"]?.stringValue?.contains("application/json") == true)
        }
    }

    @Test func bodiesOverOneMebibyteAre413() async throws {
        try await TestServer.run { client, _ in
            let padding = String(repeating: "x", count: (1 << 20) + 10)
            let response = try await client.post(#"{"jsonrpc":"2.0","method":"billing.plans","id":1,"params":{"pad":"\#(padding)"}}"#)
            #expect(response.status == .contentTooLarge)
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
            #expect(body.errorCode == -32013)
            #expect(body.errorName == "PAYLOAD_TOO_LARGE")
            #expect(body["id"] == .null)
        }
    }

    /// `/metrics` is for operators: Prometheus with BILLING_METRICS_TOKEN, or an operator's JWT; nobody else.
    @Test func metricsNeedTheMetricsTokenOrAnOperator() async throws {
        let token = "metrics-token-for-tests-0123"
        try await TestServer.run(extra: ["BILLING_METRICS_TOKEN": token]) { client, server in
            let tenant = try await server.provision(client)
            for header in [nil, "Bearer wrong-token-for-tests-012", "Bearer \(try await server.token(.admin, tenant: tenant))"] as [String?] {
                var headers: HTTPFields = [:]
                if let header { headers[.authorization] = header }
                let refused = try await client.execute(uri: "/metrics", method: .get, headers: headers)
                #expect(refused.status == .unauthorized)
                #expect(!String(buffer: refused.body).contains("billing_"))
            }
            for header in ["Bearer \(token)", "Bearer \(try await server.token(.operator))"] {
                let answered = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: header])
                #expect(answered.status == .ok)
                #expect(String(buffer: answered.body).contains("billing_inbox_events"))
            }
        }
    }

    /// A connection that sends nothing (or stops halfway through its headers) is closed after the idle timeout, so slow
    /// clients cannot hold the server's connections.
    @Test func anIdleConnectionIsClosed() async throws {
        try await TestServer.run(extra: ["BILLING_HTTP_IDLE_TIMEOUT_SECONDS": "1"]) { client, _ in
            let port = try #require(client.port)
            let started = ContinuousClock.now
            let closed = try await Task.detached { try IdleSocket.waitForClose(port: port, sending: "POST /rpc HTTP/1.1\r\nHost: x\r\n") }.value
            #expect(closed)
            #expect(ContinuousClock.now - started < .seconds(8))
        }
    }

    /// Slowloris: a client that trickles its headers (or its body) a byte at a time is never idle, and is closed
    /// at the head's (or the body's) deadline instead.
    @Test(arguments: [
        ("POST /rpc HTTP/1.1\r\n", "BILLING_HTTP_HEADER_TIMEOUT_SECONDS"),
        ("POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "BILLING_HTTP_BODY_TIMEOUT_SECONDS"),
    ])
    func aTrickledRequestIsClosedAtItsDeadline(start: String, setting: String) async throws {
        try await TestServer.run(extra: ["BILLING_HTTP_IDLE_TIMEOUT_SECONDS": "30", setting: "1"]) { client, _ in
            let port = try #require(client.port)
            let started = ContinuousClock.now
            let closed = try await Task.detached {
                try IdleSocket.waitForClose(port: port, sending: start, thenTrickling: "X", every: .milliseconds(200))
            }.value
            #expect(closed)
            #expect(ContinuousClock.now - started < .seconds(6))
        }
    }

    /// The token is read before the body: without a valid one a request may carry 64 KiB, with one 1 MiB.
    @Test func aBodyWithoutAValidTokenIsCappedAt64KiB() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            // Whitespace pads the body without changing the call.
            let call = #"{"jsonrpc":"2.0","method":"billing.status","id":1}"# + String(repeating: " ", count: 100 << 10)
            for token in [nil, "not-a-token"] as [String?] {
                let refused = try await client.post(call, token: token)
                #expect(refused.status == .contentTooLarge)
                let body = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: refused.body))
                #expect(body.errorMessage.contains("without a valid token may carry at most 64 KiB"), "\(body)")
            }
            let answered = try await client.post(call, token: admin)
            #expect(answered.status == .ok)
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: answered.body))
            #expect(body["result"]?["tenantId"] == .string(tenant.uuidString.lowercased()), "\(body)")
        }
    }

    @Test func onlyNotificationsGet204AndAnEmptyBody() async throws {
        try await TestServer.run { client, _ in
            let single = try await client.post(#"{"jsonrpc":"2.0","method":"billing.plans"}"#)
            #expect(single.status == .noContent)
            #expect(single.body.readableBytes == 0)
            let batch = try await client.post(#"[{"jsonrpc":"2.0","method":"billing.plans"},{"jsonrpc":"2.0","method":"nope"}]"#)
            #expect(batch.status == .noContent)
            #expect(batch.body.readableBytes == 0)
        }
    }

    @Test func parseErrorIsAnsweredWith200() async throws {
        try await TestServer.run { client, _ in
            let response = try await client.post(#"{"jsonrpc": "2.0", "method"#)
            #expect(response.status == .ok)
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
            #expect(body.errorCode == -32700)
        }
    }

    @Test func notReadyWhileAMigrationIsPending() async throws {
        let migrations = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID())")
        try FileManager.default.copyItem(at: TestPaths.repositoryRoot.appendingPathComponent("migrations"), to: migrations)
        defer { try? FileManager.default.removeItem(at: migrations) }
        try "SELECT 1;".write(to: migrations.appendingPathComponent("9999_not_yet.sql"), atomically: true, encoding: .utf8)
        try await TestServer.run(extra: ["BILLING_MIGRATIONS_DIR": migrations.path]) { client, _ in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .serviceUnavailable)
            #expect(String(buffer: response.body).contains("9999"))
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test func healthReadinessAndMetrics() async throws {
        try await TestServer.run { client, server in
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok)
            #expect(ready.headers[.init("X-Request-Id")!]?.isEmpty == false)
            _ = try await client.rpc("billing.plans")
            _ = try await client.rpc("billing.status")
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(try await server.token(.operator))"]).body)
            #expect(metrics.contains(#"billing_rpc_requests_total{method="billing.plans",outcome="ok"} 1"#))
            #expect(metrics.contains(#"billing_rpc_requests_total{method="billing.status",outcome="UNAUTHORIZED"} 1"#))
            #expect(metrics.contains("billing_rpc_duration_seconds_bucket"))
        }
    }
}

@Suite struct AuthTests {
    @Test func missingMalformedExpiredAndForgedTokensAreUnauthorized() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let forged = try await TokenAuthority(secrets: ["an-attackers-secret-0123456789abcdefgh"])
                .issue(role: .owner, tenant: tenant, subject: "mallory", ttl: .seconds(60))
            let expired = try await server.tokens.issue(role: .owner, tenant: tenant, subject: "u", ttl: .seconds(-120))
            let cases: [(String?, String)] = [
                (nil, "needs a bearer token"),
                ("not-a-jwt", "well-formed"),
                (forged, "signature"),
                (expired, "expired"),
            ]
            for (token, reason) in cases {
                let response = try await client.rpc("billing.status", token: token)
                #expect(response.errorCode == -32001, "\(reason)")
                #expect(response.errorName == "UNAUTHORIZED")
                #expect(response.errorMessage.contains(reason), "\(response.errorMessage)")
            }
            // A header that is not a bearer token at all.
            var headers: HTTPFields = [.contentType: "application/json"]
            headers[.authorization] = "Basic dXNlcjpwYXNz"
            let basic = try await client.execute(
                uri: "/rpc", method: .post, headers: headers,
                body: ByteBuffer(string: #"{"jsonrpc":"2.0","method":"billing.status","id":1}"#))
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: basic.body))
            #expect(body.errorCode == -32001)
        }
    }

    @Test func anySecretVerifiesSoKeysCanRotate() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let signedWithSecond = try await TokenAuthority(secrets: [TestServer.secrets[1]])
                .issue(role: .member, tenant: tenant, subject: "u", ttl: .seconds(60))
            let response = try await client.rpc("billing.status", token: signedWithSecond)
            #expect(response["result"]?["plan"] == "free")
        }
    }

    @Test func rolesWithoutTheRightAreForbidden() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            for role in [Role.owner, .admin, .member, .operator] {
                let response = try await client.rpc(
                    "tenants.provision", ["name": "X", "email": "x@example.com"], token: try await server.token(role, tenant: tenant))
                #expect(response.errorCode == -32003, "\(role)")
                #expect(response.errorName == "FORBIDDEN")
            }
        }
    }

    @Test func aTokenForARoleThatNeedsATenantMustCarryOne() async throws {
        try await TestServer.run { client, server in
            let token = try await server.tokens.issue(role: .admin, tenant: nil, subject: "u", ttl: .seconds(60))
            let response = try await client.rpc("billing.status", token: token)
            #expect(response.errorCode == -32001)
            #expect(response.errorMessage.contains("tenant_id"))
        }
    }
}

@Suite struct FirstMethodsTests {
    @Test func plansNeedNoTokenAndNeverShowPriceIDs() async throws {
        try await TestServer.run { client, _ in
            let response = try await client.rpc("billing.plans")
            guard case .array(let plans)? = response["result"]?["plans"] else { Issue.record("no plans: \(response)"); return }
            #expect(plans.compactMap { $0["key"]?.stringValue } == ["free", "pro", "team", "enterprise"])
            #expect(plans[2]["seats"] == ["min": 3, "max": 50, "default": 3])
            #expect(plans[2]["aliases"] == ["archon"])
            let text = String(decoding: try JSONEncoder().encode(response), as: UTF8.self)
            #expect(!text.contains("price_"))
        }
    }

    /// The wire shape is pinned: an accidental change shows as a diff.
    @Test func statusOfAProvisionedTenantWithoutSubscriptionIsFree() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let response = try await client.rpc("billing.status", token: try await server.token(.member, tenant: tenant))
            let expected: JSONValue = [
                "tenantId": .string(tenant.uuidString.lowercased()), "tenantName": "Acme", "plan": "free", "interval": nil,
                "status": "active", "seats": 1, "currentPeriodEnd": nil, "cancelAtPeriodEnd": false, "entitled": true, "graceEndsAt": nil,
                "creditBalance": 0, "pendingChange": nil, "cancelAt": nil, "cancelReason": nil, "pendingUpdate": nil,
            ]
            #expect(response["result"] == expected)
        }
    }

    @Test func statusOfATenantNeverProvisionedIsNotFound() async throws {
        try await TestServer.run { client, server in
            let response = try await client.rpc("billing.status", token: try await server.token(.owner, tenant: UUID()))
            #expect(response.errorCode == -32004)
            #expect(response.errorName == "NOT_FOUND")
            #expect(response.errorMessage.contains("tenants.provision"))
        }
    }

    @Test func provisioningIsIdempotentAndConflictsAreNamed() async throws {
        try await TestServer.run { client, server in
            let service = try await server.token(.service)
            let id = UUID()
            let params: [String: JSONValue] = ["tenantId": .string(id.uuidString), "name": "Acme", "email": "billing@acme.example"]
            let first = try await client.rpc("tenants.provision", params, token: service)
            #expect(first["result"]?["created"] == true)
            #expect(first["result"]?["tenantId"] == .string(id.uuidString.lowercased()))
            let again = try await client.rpc("tenants.provision", params, token: service)
            #expect(again["result"]?["created"] == false)
            var changed = params
            changed["name"] = "Other"
            let conflict = try await client.rpc("tenants.provision", changed, token: service)
            #expect(conflict.errorCode == -32009)
            #expect(conflict.errorMessage.contains("Acme"))
            // Without an id, a new tenant each time.
            let fresh = try await client.rpc("tenants.provision", ["name": "Beta", "email": "b@beta.example"], token: service)
            #expect(fresh["result"]?["tenantId"]?.stringValue.flatMap(UUID.init(uuidString:)) != nil)
        }
    }

    @Test func badProvisioningParamsAreNamed() async throws {
        try await TestServer.run { client, server in
            let service = try await server.token(.service)
            let cases: [([String: JSONValue], String)] = [
                (["name": "Acme"], "email"),
                (["name": "Acme", "email": "not-an-email"], "email"),
                (["name": "", "email": "a@b.io"], "name"),
                (["name": 5, "email": "a@b.io"], "name"),
                (["tenantId": "nope", "name": "Acme", "email": "a@b.io"], "tenantId"),
                (["name": "Acme", "email": "a@b.io", "plan": "pro"], "plan"),
            ]
            for (params, field) in cases {
                let response = try await client.rpc("tenants.provision", params, token: service)
                #expect(response.errorCode == -32602, "\(params)")
                #expect(response["error"]?["data"]?["field"] == .string(field), "\(params): \(response)")
            }
        }
    }
}

/// A token of tenant A never reads B's data, whatever params it sends.
@Suite struct TenantIsolationThroughTheAPITests {
    @Test func tenantsOnlySeeThemselves() async throws {
        try await TestServer.run { client, server in
            let tenantA = try await server.provision(client, name: "A")
            let tenantB = try await server.provision(client, name: "B")
            // B has a team subscription and credits.
            try await server.database.withAppClient { db in
                try await db.withTenant(tenantB, operation: "seed") { connection in
                    try await connection.query("""
                        INSERT INTO billing.subscriptions (tenant_id, stripe_subscription_id, plan, billing_interval, seats, status)
                        VALUES (\(tenantB), 'sub_B', 'team', 'year', 7, 'active')
                        """, logger: db.logger)
                    try await connection.query(
                        "UPDATE billing.credit_balances SET available = 900 WHERE tenant_id = \(tenantB)", logger: db.logger)
                }
            }
            let ownerA = try await server.token(.owner, tenant: tenantA)
            let own = try await client.rpc("billing.status", token: ownerA)
            #expect(own["result"]?["plan"] == "free")
            #expect(own["result"]?["creditBalance"] == 0)
            #expect(own["result"]?["tenantId"] == .string(tenantA.uuidString.lowercased()))

            for params: [String: JSONValue] in [
                ["tenantId": .string(tenantB.uuidString)], ["tenantId": .string(tenantB.uuidString.lowercased())], ["tenant_id": .string(tenantB.uuidString)],
            ] {
                let response = try await client.rpc("billing.status", params, token: ownerA)
                #expect(response.errorCode == -32602, "\(params)")
                #expect(response["result"] == nil)
            }

            // service and operator name the tenant, and must.
            for role in [Role.service, .operator] {
                let token = try await server.token(role)
                let b = try await client.rpc("billing.status", ["tenantId": .string(tenantB.uuidString)], token: token)
                #expect(b["result"]?["plan"] == "team")
                #expect(b["result"]?["seats"] == 7)
                #expect(b["result"]?["interval"] == "year")
                #expect(b["result"]?["creditBalance"] == 900)
                let missing = try await client.rpc("billing.status", token: token)
                #expect(missing.errorCode == -32602)
                #expect(missing["error"]?["data"]?["field"] == "tenantId")
                let malformed = try await client.rpc("billing.status", ["tenantId": "B"], token: token)
                #expect(malformed.errorCode == -32602)
            }
        }
    }
}

@Suite struct OpenRPCDocumentTests {
    /// Every registered method is in api-spec/openrpc.json with its kind and roles, and nothing else is.
    @Test func documentAndRegistryAgree() async throws {
        let data = try Data(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("api-spec/openrpc.json"))
        let document = try JSONDecoder().decode(JSONValue.self, from: data)
        #expect(document["openrpc"]?.stringValue?.hasPrefix("1.3") == true)
        guard case .array(let described)? = document["methods"] else { Issue.record("no methods"); return }
        let configuration = try TestServer.configuration(try await TestCluster.shared.freshDatabase())
        let api = BillingAPI(
            environment: try configuration.environment(
                database: BillingDatabase(url: try configuration.requireDatabaseURL(), logger: Logger(label: "t")), logger: Logger(label: "t")),
            openRPC: document)
        let registry = api.registry()
        let names = Set(described.compactMap { $0["name"]?.stringValue })
        #expect(names == Set(registry.methods.keys), "document: \(names.sorted()), registry: \(registry.methods.keys.sorted())")
        for entry in described {
            guard let name = entry["name"]?.stringValue, let method = registry[name] else { continue }
            #expect(entry["x-kind"] == .string(method.kind.rawValue), "\(name)")
            #expect(entry["x-roles"] == .array(method.roles.map { .string($0) }), "\(name)")
            #expect(entry["result"]?["schema"] != nil, "\(name) needs a result schema")
            #expect(entry["errors"] != nil, "\(name) needs its errors")
            #expect(entry["examples"] != nil, "\(name) needs an example")
        }
    }

    @Test func discoverReturnsTheDocument() async throws {
        try await TestServer.run { client, _ in
            let response = try await client.rpc("rpc.discover")
            #expect(response["result"]?["openrpc"]?.stringValue?.hasPrefix("1.3") == true)
        }
    }
}

/// A raw TCP connection to the server that sends `sending` (part of a request) and then nothing.
enum IdleSocket {
    /// Whether the server closed the connection within 10 s; with `trickle`, one more byte is sent every `every`
    /// meanwhile, so the connection is never idle.
    static func waitForClose(port: Int, sending: String, thenTrickling trickle: String? = nil, every: Duration = .seconds(1)) throws -> Bool {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw TestFailure("socket: \(errno)") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect: \(errno)") }
        _ = sending.withCString { send(socket, $0, strlen($0), 0) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let giveUp = ContinuousClock.now + .seconds(10)
        let wait = trickle == nil ? Duration.seconds(10) : every
        var timeout = timeval(
            tv_sec: Int(wait.components.seconds), tv_usec: Int(wait.components.attoseconds / 1_000_000_000_000))
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        while ContinuousClock.now < giveUp {
            let read = recv(socket, &buffer, buffer.count, 0)
            if read == 0 { return true }  // closed by the server
            if read < 0 {
                if errno == ECONNRESET { return true }  // reset counts as closed
                guard errno == EAGAIN || errno == EWOULDBLOCK, let trickle else { return false }
                // MSG_NOSIGNAL: a write after the server closed must not kill the test process.
                if trickle.withCString({ send(socket, $0, strlen($0), Int32(MSG_NOSIGNAL)) }) < 0 { return true }
            }
        }
        return false
    }
}
