import BillingCore
import BillingDevSupport
import Foundation
import HummingbirdTesting
import JSONRPC
import Testing

/// The credit wallet through the running server: consumption by the SaaS backend, grants by operators, the ledger.
@Suite struct CreditsAPITests {
    func grant(_ client: some TestClientProtocol, _ server: TestServer, _ tenant: UUID, _ amount: Int, key: String) async throws -> JSONValue {
        try await client.rpc("credits.grant", [
            "tenantId": .string(tenant.uuidString), "amount": .integer(amount), "reason": "test grant", "idempotencyKey": .string(key),
        ], token: try await server.token(.operator))
    }

    func consume(_ client: some TestClientProtocol, _ server: TestServer, _ tenant: UUID, _ amount: Int, key: String, reason: String = "report export") async throws -> JSONValue {
        try await client.rpc("credits.consume", [
            "tenantId": .string(tenant.uuidString), "amount": .integer(amount), "reason": .string(reason), "idempotencyKey": .string(key),
        ], token: try await server.token(.service))
    }

    @Test func consumptionDebitsOncePerKeyAndNeverBelowZero() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            #expect(try await grant(client, server, tenant, 100, key: "g1")["result"]?["balance"]?["available"] == 100)

            let first = try await consume(client, server, tenant, 30, key: "job-1")
            #expect(first["result"]?["amount"] == -30)
            #expect(first["result"]?["replayed"] == false)
            #expect(first["result"]?["balance"]?["available"] == 70)
            // The same key returns the first result and debits nothing.
            let again = try await consume(client, server, tenant, 30, key: "job-1")
            #expect(again["result"]?["replayed"] == true)
            #expect(again["result"]?["entryId"] == first["result"]?["entryId"])
            #expect(again["result"]?["balance"]?["available"] == 70)
            // The same key with other values is a conflict naming the earlier ones.
            let changed = try await consume(client, server, tenant, 31, key: "job-1")
            #expect(changed.errorName == "CONFLICT")
            #expect(changed["error"]?["data"]?["amount"] == 30)

            // Too little: PAYMENT_REQUIRED with the balance, and nothing debited.
            let short = try await consume(client, server, tenant, 71, key: "job-2")
            #expect(short.errorCode == -32002)
            #expect(short.errorName == "PAYMENT_REQUIRED")
            #expect(short["error"]?["data"]?["available"] == 70)
            #expect(short["error"]?["data"]?["requested"] == 71)
            #expect(short.errorMessage.contains("billing.topUp"))
            // Each debit is in the audit trail once, the refused and repeated ones not at all.
            let consumed = try await server.database.withOwnerClient { connection in
                try await connection.first(
                    "SELECT count(*)::int FROM billing.audit_events WHERE action = 'credits.consumed' AND actor_type = 'service' AND tenant_id = \(tenant)",
                    as: Int.self, logger: .init(label: "t"))
            }
            #expect(consumed == 1)
            // The refused key is not spent: once there is enough, it debits.
            _ = try await grant(client, server, tenant, 1, key: "g2")
            #expect(try await consume(client, server, tenant, 71, key: "job-2")["result"]?["balance"]?["available"] == 0)
        }
    }

    @Test func onlyTheServiceConsumesOnlyOperatorsGrantAndParamsAreChecked() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let byAdmin = try await client.rpc("credits.consume", ["amount": 1, "reason": "x", "idempotencyKey": "k"], token: admin)
            #expect(byAdmin.errorName == "FORBIDDEN")
            let byService = try await client.rpc("credits.grant", [
                "tenantId": .string(tenant.uuidString), "amount": 1, "reason": "x", "idempotencyKey": "k",
            ], token: try await server.token(.service))
            #expect(byService.errorName == "FORBIDDEN")
            for (amount, reason, key, field) in [(0, "x", "k", "amount"), (-5, "x", "k", "amount"), (5, "  ", "k", "reason"), (5, "x", "", "idempotencyKey")] {
                let response = try await consume(client, server, tenant, amount, key: key, reason: reason)
                #expect(response.errorCode == -32602, "\(field)")
                #expect(response["error"]?["data"]?["field"] == .string(field))
            }
            let unknown = try await consume(client, server, UUID(), 1, key: "k")
            #expect(unknown.errorName == "NOT_FOUND")
        }
    }

    @Test func grantsAddAndRemoveOnceAuditedAndDebtBlocksConsumption() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            _ = try await grant(client, server, tenant, 50, key: "g-add")
            let removed = try await grant(client, server, tenant, -80, key: "g-remove")
            #expect(removed["result"]?["balance"] == ["available": -30, "frozen": 0, "debt": 30])
            #expect(try await grant(client, server, tenant, -80, key: "g-remove")["result"]?["replayed"] == true)
            let blocked = try await consume(client, server, tenant, 1, key: "c")
            #expect(blocked.errorName == "PAYMENT_REQUIRED")
            #expect(blocked["error"]?["data"]?["debt"] == 30)
            let audited = try await server.database.withOwnerClient { connection in
                try await connection.first(
                    "SELECT count(*)::int FROM billing.audit_events WHERE action = 'credits.granted' AND actor_type = 'operator' AND tenant_id = \(tenant)",
                    as: Int.self, logger: .init(label: "t"))
            }
            #expect(audited == 2)
        }
    }

    /// Paging the ledger while entries keep arriving: every entry that existed at the start is seen exactly once.
    @Test func theLedgerPagesWithoutSkipsOrRepeatsUnderConcurrentWrites() async throws {
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            for n in 0..<25 { _ = try await grant(client, server, tenant, 10 + n, key: "seed-\(n)") }
            let member = try await server.token(.member, tenant: tenant)
            let writer = Task {
                for n in 0..<25 { _ = try await consume(client, server, tenant, 1, key: "live-\(n)") }
            }
            var seen: [Int] = []
            var cursor: JSONValue = .null
            var pages = 0
            repeat {
                var params: [String: JSONValue] = ["limit": 4]
                if cursor != .null { params["cursor"] = cursor }
                let page = try await client.rpc("billing.credits", params, token: member)
                guard case .array(let entries)? = page["result"]?["entries"] else { throw TestFailure("no entries: \(page)") }
                seen += entries.compactMap { $0["id"]?.stringValue.flatMap { Int($0) } }
                cursor = page["result"]?["nextCursor"] ?? .null
                pages += 1
            } while cursor != .null && pages < 100
            try await writer.value
            #expect(Set(seen).count == seen.count, "repeated: \(seen)")
            #expect(seen == seen.sorted(by: >))
            let seedIDs = try await server.database.withOwnerClient { connection in
                var ids: [Int] = []
                for try await id in try await connection.query(
                    "SELECT entry_id::int FROM billing.credit_ledger WHERE tenant_id = \(tenant) AND source LIKE 'grant:seed-%'",
                    logger: .init(label: "t")).decode(Int.self) { ids.append(id) }
                return ids
            }
            #expect(seedIDs.count == 25)
            #expect(Set(seedIDs).isSubset(of: Set(seen)))
            let last = try await client.rpc("billing.credits", ["limit": 200], token: member)
            #expect(last["result"]?["balance"]?["available"] == .integer((0..<25).reduce(0) { $0 + 10 + $1 } - 25))
            #expect(last["result"]?["nextCursor"] == .null)
            let bad = try await client.rpc("billing.credits", ["cursor": "abc"], token: member)
            #expect(bad["error"]?["data"]?["field"] == "cursor")
        }
    }
}
