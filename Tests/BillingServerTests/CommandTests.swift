import AsyncHTTPClient
import Billing
import BillingCore
import BillingServer
import BillingStore
import BillingDevSupport
import StripeAPI
import Foundation
import NIOHTTP1
import Testing

/// The built `billingd`, run as a user runs it (spawned and reaped without Foundation's Process).
enum Billingd {
    static var executable: URL { TestPaths.repositoryRoot.appendingPathComponent(".build/debug/billingd") }

    struct Running {
        let child: ChildProcess
        let stdout: URL
        let stderr: URL
        func output() -> String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
        func errors() -> String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }
    }

    static func start(_ arguments: [String], environment: [String: String]) throws -> Running {
        let stdout = FileManager.default.temporaryDirectory.appendingPathComponent("billingd-test-\(UUID()).out")
        let stderr = FileManager.default.temporaryDirectory.appendingPathComponent("billingd-test-\(UUID()).err")
        let child = try ChildProcess.spawn(
            [executable.path] + arguments, environment: merged(environment), stdoutPath: stdout.path, stderrPath: stderr.path)
        return Running(child: child, stdout: stdout, stderr: stderr)
    }

    /// Polls `url` until it answers `status`, for up to 30 s (a debug binary starting on a loaded machine).
    static func waitUntil(_ url: String, answers status: HTTPResponseStatus) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(1)),
               response.status == status
            {
                return true
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Runs to completion; (exit status, standard output, standard error).
    static func run(_ arguments: [String], environment: [String: String]) async throws -> (Int32, String, String) {
        let run = try await ProgramRun.run([executable.path] + arguments, environment: merged(environment))
        return (run.status, run.output, run.errors)
    }

    static func merged(_ environment: [String: String]) -> [String: String] {
        environment.merging(["PATH": "/usr/bin:/bin", "BILLING_RESOURCES_DIR": TestPaths.repositoryRoot.path]) { $1 }
    }
}

@Suite
struct CommandTests {
    let environment = ["BILLING_JWT_SECRET": TestServer.secrets.joined(separator: ",")]

    @Test func tokenPrintsAVerifiableToken() async throws {
        let tenant = UUID()
        let (status, output, _) = try await Billingd.run(
            ["token", "--role", "admin", "--tenant", tenant.uuidString, "--sub", "alice", "--ttl", "60"], environment: environment)
        #expect(status == 0)
        let authority = await TokenAuthority(secrets: [TestServer.secrets[1], TestServer.secrets[0]])
        let authentication = await authority.authenticate(header: "Bearer " + output.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(authentication == .authenticated(Principal(subject: "alice", role: .admin, tenantID: tenant)))
    }

    @Test func serviceTokensCarryNoTenant() async throws {
        let (status, output, _) = try await Billingd.run(["token", "--role", "service"], environment: environment)
        #expect(status == 0)
        let authentication = await TokenAuthority(secrets: TestServer.secrets)
            .authenticate(header: "Bearer " + output.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(authentication == .authenticated(Principal(subject: "cli", role: .service, tenantID: nil)))
    }

    @Test(arguments: [
        (["token", "--role", "service", "--tenant", UUID().uuidString], "leave out --tenant"),
        (["token", "--role", "admin"], "needs --tenant"),
        (["token", "--role", "root"], "--role must be one of"),
        (["token", "--role", "member", "--tenant", "acme"], "needs --tenant"),
    ])
    func tokenRefusesWhatItCannotSign(arguments: [String], message: String) async throws {
        let (status, _, errors) = try await Billingd.run(arguments, environment: environment)
        #expect(status != 0)
        #expect(errors.contains(message), "\(errors)")
    }

    @Test func tokenWithoutASecretSaysWhatToSet() async throws {
        let (status, _, errors) = try await Billingd.run(["token", "--role", "service"], environment: [:])
        #expect(status != 0)
        #expect(errors.contains("BILLING_JWT_SECRET is not set"))
    }

    /// `serve` as its own role, migrating at start because the owner URL is set, and ending cleanly on SIGTERM.
    @Test func serveMigratesAnswersAndStopsOnSIGTERM() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        let port = try freeLocalPort()
        var serveEnvironment = environment
        serveEnvironment["DATABASE_URL"] = database.appURL.secretURLString
        serveEnvironment["DATABASE_OWNER_URL"] = database.ownerURL.secretURLString
        serveEnvironment["BILLING_HTTP_PORT"] = String(port)
        let running = try Billingd.start(["serve"], environment: serveEnvironment)
        var exitStatus: Int32?
        defer { if exitStatus == nil { running.child.signal(SIGKILL); _ = running.child.wait() } }

        #expect(try await Billingd.waitUntil("http://127.0.0.1:\(port)/readyz", answers: .ok), "\(running.errors())")
        running.child.signal(SIGTERM)
        for _ in 0..<100 where exitStatus == nil {
            exitStatus = running.child.exitStatusIfDone()
            if exitStatus == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(exitStatus == 0, "\(running.errors())")
        // Secrets never reach the logs.
        let logs = running.errors() + running.output()
        #expect(!logs.contains(TestServer.secrets[0]))
        #expect(!logs.contains(TestCluster.appPassword))
    }

    /// `billingd stand-in` alone sells the catalog's prices.
    @Test func standInRunsAloneWithTheCatalogsPrices() async throws {
        let port = try freeLocalPort()
        let running = try Billingd.start(["stand-in", "--port", String(port)], environment: environment)
        defer { running.child.signal(SIGKILL); _ = running.child.wait() }
        try #require(try await Billingd.waitUntil("http://127.0.0.1:\(port)/checkout/none", answers: .notFound), "\(running.errors())")
        let client = StripeClient(configuration: StripeConfiguration(apiBase: "http://127.0.0.1:\(port)", secretKey: "sk_test_cli"))
        let session = try await client.createCheckoutSession([
            "mode": "subscription", "success_url": "https://billing.example/done",
            "line_items": [["price": "price_team_month", "quantity": 3]],
        ], idempotencyKey: UUID().uuidString)
        #expect(session.amountTotal == 4500)
        #expect(session.url == "http://127.0.0.1:\(port)/checkout/\(session.id)")
    }
}
