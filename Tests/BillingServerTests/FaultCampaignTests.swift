import AsyncHTTPClient
import BillingServer
import BillingStore
import BillingDevSupport
import Foundation
import JSONRPC
import Logging
import PostgresNIO
import ServiceLifecycle
import StripeAPI
import StripeStandIn
import Testing

/// The fault campaign: `billingd serve` as a user runs it, its Stripe the stand-in (which delivers its webhooks, and
/// retries them while the server is down), under load from several tenants buying and spending credits, while
/// Stripe answers 500s, 429s and timeouts, PostgreSQL is stopped and started again, and the server is killed with
/// SIGKILL in the middle of a request. Afterwards it counts what was lost or done twice: every count must be 0.
@Suite struct FaultCampaignTests {
    static let secret = "whsec_fault_campaign"

    @Test func underFaultsNoEventIsLostAndNoMoneyMovesTwice() async throws {
        let (cluster, database) = try await TestCluster.standalone()
        defer {
            cluster.stop()
            try? FileManager.default.removeItem(at: cluster.directory)
        }
        let (serverPort, standInPort) = (try freeLocalPort(), try freeLocalPort())
        let url = "http://127.0.0.1:\(serverPort)"
        let standInURL = "http://127.0.0.1:\(standInPort)"
        let catalog = try TestServer.configuration(database).loadCatalog()
        let standIn = StandInState(configuration: StandInConfiguration(
            publicURL: standInURL, webhookURL: "\(url)/webhooks/stripe", webhookSecret: Self.secret, prices: catalog.standInPrices,
            webhookRetryInitial: .milliseconds(200), clock: Date.init))
        let environment = [
            "DATABASE_URL": database.appURL.secretURLString, "BILLING_HTTP_PORT": String(serverPort), "BILLING_PUBLIC_URL": url,
            "BILLING_JWT_SECRET": TestServer.secrets[0], "STRIPE_SECRET_KEY": "sk_test_fault_campaign", "STRIPE_API_BASE": standInURL,
            "STRIPE_WEBHOOK_SECRETS": Self.secret, "BILLING_INBOX_WORKERS": "2", "BILLING_INBOX_POLL_MS": "100",
            "BILLING_STRIPE_TIMEOUT_MS": "2000", "BILLING_STRIPE_MAX_ATTEMPTS": "2", "BILLING_STRIPE_RETRY_INITIAL_MS": "50",
            "BILLING_WEBHOOK_STORE_TIMEOUT_MS": "1000", "BILLING_INBOX_EVENT_TIMEOUT_MS": "3000",
            "BILLING_CHECKOUT_SESSIONS_PER_MINUTE": "1000", "BILLING_LOG_LEVEL": "warning",
        ]
        let services = ServiceGroup(configuration: .init(
            services: [buildStandInApplication(state: standIn, port: standInPort)], logger: Logger(label: "fault-campaign")))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            defer { group.cancelAll() }
            let server = Server(environment: environment)
            try await server.start()
            defer { server.kill() }
            let load = Load(
                url: url, port: serverPort, tokens: await TokenAuthority(secrets: [TestServer.secrets[0]]), standIn: standIn, seen: Seen())
            var provisioned: [UUID] = []
            for index in 0..<4 { provisioned.append(try await load.provision("Fault \(index)")) }
            let tenants = provisioned

            // 1. Stripe fails: 500s and 429s before executing, and answers slower than the client waits.
            await standIn.inject(StandInFault(kind: .errorBeforeExecution, path: "/v1/checkout/sessions", count: 2))
            await standIn.inject(StandInFault(kind: .rateLimited, path: "/v1/checkout/sessions", count: 2))
            await standIn.inject(StandInFault(kind: .delay, path: "/v1/checkout/sessions", count: 1, delayMilliseconds: 3000))
            for tenant in tenants { try await load.buyAndPay(tenant, key: "round-1", credits: 600) }
            for tenant in tenants { try await load.consume(tenant, key: "spend-1", amount: 50) }

            // 2. PostgreSQL stops while checkouts are paid (their webhooks get 503 and Stripe retries) and credits are
            //    spent (the calls fail until it is back, then are retried with the same keys).
            var sessions: [(UUID, String)] = []
            for tenant in tenants { sessions.append((tenant, try await load.topUp(tenant, key: "round-2", credits: 700))) }
            cluster.stop()
            for (_, session) in sessions { _ = await standIn.complete(session, outcome: .pay) }
            try await withThrowingTaskGroup(of: Void.self) { spenders in
                for tenant in tenants { spenders.addTask { try await load.consume(tenant, key: "spend-2", amount: 25) } }
                try await Task.sleep(for: .seconds(2))
                try cluster.start(durable: false)
                try await spenders.waitForAll()
            }

            // 3. The server is killed mid-request: a top-up waiting for Stripe, and webhooks arriving meanwhile.
            await standIn.inject(StandInFault(kind: .delay, path: "/v1/checkout/sessions", count: 1, delayMilliseconds: 1500))
            let first = tenants[0]
            let interrupted = Task { try await load.buyAndPay(first, key: "round-3", credits: 800) }
            try await Task.sleep(for: .milliseconds(700))
            server.kill()
            for tenant in tenants.dropFirst() {
                let session = try await load.topUpWhenUp(tenant, key: "round-3", credits: 800, server: server)
                _ = await standIn.complete(session, outcome: .pay)
            }
            try await interrupted.value
            for tenant in tenants { try await load.consume(tenant, key: "spend-3", amount: 10) }

            // Everything Stripe sent is delivered and processed.
            let settled = try await DurabilityTests.eventually(seconds: 90) {
                for id in await standIn.eventIDs() where await standIn.deliveries(of: id) == 0 { return false }
                return try await Self.count(database, "SELECT count(*)::int FROM billing.stripe_events WHERE status NOT IN ('processed', 'ignored')") == 0
            }
            #expect(settled, "\(server.errors())")

            // The counts.
            let stored = Set(try await Self.strings(database, "SELECT event_id FROM billing.stripe_events WHERE status IN ('processed', 'ignored')"))
            let lost = await standIn.eventIDs().filter { !stored.contains($0) }.count
            let charges = await standIn.succeededPaymentIntents()
            let doubleCharges = Dictionary(grouping: charges, by: { $0.metadata["top_up_id"] ?? $0.id }).values.filter { $0.count > 1 }.count
            let paidTopUps = Set(charges.compactMap { $0.metadata["top_up_id"] })
            let creditedTwice = try await Self.count(database, """
                SELECT count(*)::int FROM (SELECT tenant_id, source FROM billing.credit_ledger GROUP BY 1, 2 HAVING count(*) > 1) twice
                """)
            let creditedTopUps = Set(try await Self.strings(database, "SELECT substr(source, 7) FROM billing.credit_ledger WHERE kind = 'topup'"))
            let halfApplied = try await Self.count(database, """
                SELECT count(*)::int FROM billing.credit_balances b
                WHERE b.available <> (SELECT coalesce(sum(amount), 0) FROM billing.credit_ledger l WHERE l.tenant_id = b.tenant_id)
                   OR b.available <> (SELECT balance_after FROM billing.credit_ledger l WHERE l.tenant_id = b.tenant_id ORDER BY entry_id DESC LIMIT 1)
                """)
            let expected = 600 + 700 + 800 - 50 - 25 - 10
            let wrongBalances = try await Self.count(
                database, "SELECT count(*)::int FROM billing.credit_balances WHERE available <> \(expected)")
            let seen = await load.seen.counts
            print("fault campaign: retried \(seen) (by error), \(await standIn.failedDeliveryCount()) webhook deliveries failed and retried; \(await standIn.eventIDs().count) events, lost \(lost); \(charges.count) charges, doubled \(doubleCharges); credited twice \(creditedTwice), paid but not credited \(paidTopUps.subtracting(creditedTopUps).count), half-applied movements \(halfApplied), balances off \(wrongBalances)")
            // The faults did bite: calls failed while the server was down, while PostgreSQL was, and while Stripe was.
            #expect(seen["no answer", default: 0] > 0, "\(seen)")
            #expect(seen["SERVICE_UNAVAILABLE", default: 0] + seen["INTERNAL_SERVER_ERROR", default: 0] > 0, "\(seen)")
            // Webhooks were refused (503) or unanswered while PostgreSQL or the server was down, and Stripe retried them.
            #expect(await standIn.failedDeliveryCount() > 0)
            #expect(lost == 0)
            #expect(doubleCharges == 0)
            #expect(charges.count == tenants.count * 3)
            #expect(creditedTwice == 0)
            #expect(paidTopUps == creditedTopUps)
            #expect(halfApplied == 0)
            #expect(wrongBalances == 0)
            #expect(try await Self.count(database, "SELECT count(*)::int FROM billing.credit_balances") == tenants.count)
        }
    }

    static func count(_ database: TestDatabase, _ sql: String) async throws -> Int {
        try await database.withOwnerClient { connection in
            try await connection.first(PostgresQuery(unsafeSQL: sql), as: Int.self, logger: Logger(label: "test")) ?? -1
        }
    }

    static func strings(_ database: TestDatabase, _ sql: String) async throws -> [String] {
        try await database.withOwnerClient { connection in
            var values: [String] = []
            for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test")).decode(String.self) {
                values.append(value)
            }
            return values
        }
    }

    actor Seen {
        private(set) var counts: [String: Int] = [:]
        func add(_ name: String) { counts[name, default: 0] += 1 }
    }

    /// `billingd serve`, started again after a kill.
    final class Server: @unchecked Sendable {
        let environment: [String: String]
        private let lock = NSLock()
        private var running: Billingd.Running?

        init(environment: [String: String]) { self.environment = environment }

        func start() async throws {
            let started = try Billingd.start(["serve"], environment: environment)
            lock.withLock { running = started }
            guard try await Billingd.waitUntil("http://127.0.0.1:\(environment["BILLING_HTTP_PORT"]!)/healthz", answers: .ok) else {
                throw TestFailure("billingd serve did not start: \(started.errors())")
            }
        }

        func kill() {
            guard let child = lock.withLock({ running.map { $0.child } }) else { return }
            child.signal(SIGKILL)
            _ = child.wait()
            lock.withLock { running = nil }
        }

        var isRunning: Bool { lock.withLock { running != nil } }
        func errors() -> String { lock.withLock { running?.errors() ?? "" } }
    }

    /// The load: RPC calls over HTTP, each retried with its own key until it is answered (as a client of a server
    /// that is down, or whose Stripe or database is, would).
    struct Load: Sendable {
        let url: String
        let port: Int
        let tokens: TokenAuthority
        let standIn: StandInState
        /// The failures each retry answered, by error name.
        let seen: Seen

        func provision(_ name: String) async throws -> UUID {
            let tenant = UUID()
            let answer = try await untilAnswered("tenants.provision", [
                "tenantId": .string(tenant.uuidString), "name": .string(name), "email": "faults@acme.example",
            ], token: try await tokens.issue(role: .service, tenant: nil, subject: "service", ttl: .seconds(600)))
            guard answer["result"]?["created"] == true else { throw TestFailure("provisioning failed: \(answer)") }
            return tenant
        }

        func topUp(_ tenant: UUID, key: String, credits: Int) async throws -> String {
            let admin = try await tokens.issue(role: .admin, tenant: tenant, subject: "admin", ttl: .seconds(600))
            let answer = try await untilAnswered("billing.topUp", ["credits": .integer(credits), "idempotencyKey": .string(key)], token: admin)
            guard let session = answer["result"]?["sessionId"]?.stringValue else { throw TestFailure("top-up failed: \(answer)") }
            return session
        }

        /// A top-up once the killed server is started again (by this call, the first time).
        func topUpWhenUp(_ tenant: UUID, key: String, credits: Int, server: Server) async throws -> String {
            if !server.isRunning { try await server.start() }
            return try await topUp(tenant, key: key, credits: credits)
        }

        func buyAndPay(_ tenant: UUID, key: String, credits: Int) async throws {
            let session = try await topUp(tenant, key: key, credits: credits)
            _ = await standIn.complete(session, outcome: .pay)
        }

        func consume(_ tenant: UUID, key: String, amount: Int) async throws {
            let service = try await tokens.issue(role: .service, tenant: nil, subject: "service", ttl: .seconds(600))
            let answer = try await untilAnswered("credits.consume", [
                "tenantId": .string(tenant.uuidString), "amount": .integer(amount), "reason": "fault campaign", "idempotencyKey": .string(key),
            ], token: service)
            guard answer["result"] != nil else { throw TestFailure("consume failed: \(answer)") }
        }

        /// Retried until answered with a result or an error that is the caller's to fix, for at most a minute and a half.
        func untilAnswered(_ method: String, _ params: [String: JSONValue], token: String) async throws -> JSONValue {
            let deadline = ContinuousClock.now + .seconds(90)
            var last = "no answer"
            while ContinuousClock.now < deadline {
                do {
                    let answer = try await AtomicPhasesTests.rpc(port: port, method, params, token: token)
                    // Stripe or the database failing, or a repeat told to wait: the same call again, as a client would.
                    if let name = answer.errorName, ["SERVICE_UNAVAILABLE", "INTERNAL_SERVER_ERROR", "CONFLICT", "TOO_MANY_REQUESTS"].contains(name) {
                        last = "\(answer)"
                        await seen.add(name)
                    } else {
                        return answer
                    }
                } catch {
                    last = "\(error)"  // the server is down
                    await seen.add("no answer")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw TestFailure("\(method) was never answered: \(last)")
        }
    }
}
