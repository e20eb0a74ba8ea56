import AsyncHTTPClient
import Billing
import BillingCore
import BillingServer
import BillingTestSupport
import Foundation
import Testing

/// The built `billingd`, run as a user runs it.
enum Billingd {
    static var executable: URL {
        let debug = TestPaths.repositoryRoot.appendingPathComponent(".build/debug/billingd")
        return debug
    }

    /// Runs to completion; (exit status, standard output, standard error).
    static func run(_ arguments: [String], environment: [String: String]) throws -> (Int32, String, String) {
        let process = try start(arguments, environment: environment)
        process.process.waitUntilExit()
        return (process.process.terminationStatus, process.output(), process.errors())
    }

    struct Running {
        let process: Process
        let stdout: URL
        let stderr: URL
        func output() -> String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
        func errors() -> String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }
    }

    static func start(_ arguments: [String], environment: [String: String]) throws -> Running {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment.merging(["PATH": "/usr/bin:/bin"]) { $1 }
        process.currentDirectoryURL = TestPaths.repositoryRoot
        let stdout = FileManager.default.temporaryDirectory.appendingPathComponent("billingd-test-\(UUID()).out")
        let stderr = FileManager.default.temporaryDirectory.appendingPathComponent("billingd-test-\(UUID()).err")
        FileManager.default.createFile(atPath: stdout.path, contents: nil)
        FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
        return Running(process: process, stdout: stdout, stderr: stderr)
    }
}

@Suite
struct CommandTests {
    let environment = ["BILLING_JWT_SECRET": TestServer.secrets.joined(separator: ",")]

    @Test func tokenPrintsAVerifiableToken() async throws {
        let tenant = UUID()
        let (status, output, _) = try Billingd.run(
            ["token", "--role", "admin", "--tenant", tenant.uuidString, "--sub", "alice", "--ttl", "60"], environment: environment)
        #expect(status == 0)
        let authority = await TokenAuthority(secrets: [TestServer.secrets[1], TestServer.secrets[0]])
        let authentication = await authority.authenticate(header: "Bearer " + output.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(authentication == .authenticated(Principal(subject: "alice", role: .admin, tenantID: tenant)))
    }

    @Test func serviceTokensCarryNoTenant() async throws {
        let (status, output, _) = try Billingd.run(["token", "--role", "service"], environment: environment)
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
    func tokenRefusesWhatItCannotSign(arguments: [String], message: String) throws {
        let (status, _, errors) = try Billingd.run(arguments, environment: environment)
        #expect(status != 0)
        #expect(errors.contains(message), "\(errors)")
    }

    @Test func tokenWithoutASecretSaysWhatToSet() throws {
        let (status, _, errors) = try Billingd.run(["token", "--role", "service"], environment: [:])
        #expect(status != 0)
        #expect(errors.contains("BILLING_JWT_SECRET is not set"))
    }

    /// `serve` as its own role, migrating at start because the owner URL is set, and ending cleanly on SIGTERM.
    @Test func serveMigratesAnswersAndStopsOnSIGTERM() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        let port = Int.random(in: 20000...40000)
        var serveEnvironment = environment
        serveEnvironment["DATABASE_URL"] = database.appURL.secretURLString
        serveEnvironment["DATABASE_OWNER_URL"] = database.ownerURL.secretURLString
        serveEnvironment["BILLING_HTTP_PORT"] = String(port)
        let running = try Billingd.start(["serve"], environment: serveEnvironment)
        defer { if running.process.isRunning { running.process.terminate() } }

        var ready = false
        for _ in 0..<100 {
            if let response = try? await HTTPClient.shared.execute(
                HTTPClientRequest(url: "http://127.0.0.1:\(port)/readyz"), timeout: .seconds(2)), response.status == .ok
            {
                ready = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(ready, "\(running.errors())")
        kill(running.process.processIdentifier, SIGTERM)
        for _ in 0..<100 where running.process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!running.process.isRunning)
        #expect(running.process.terminationStatus == 0)
        // Secrets never reach the logs.
        let logs = running.errors() + running.output()
        #expect(!logs.contains(TestServer.secrets[0]))
        #expect(!logs.contains(TestCluster.appPassword))
    }
}
