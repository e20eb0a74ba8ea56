import BillingStore
import BillingDevSupport
import Foundation
import HummingbirdTesting
import Testing

/// `api-spec/openapi.yaml`: valid (openapi-spec-validator), and true of the live server (schemathesis fuzzes every
/// route but Stripe's webhook endpoint, checking for server errors, undocumented statuses and content types).
@Suite struct OpenAPITests {
    static var python: String? {
        ProcessInfo.processInfo.environment["BILLING_TEST_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static var document: String { TestPaths.repositoryRoot.appendingPathComponent("api-spec/openapi.yaml").path }

    @Test func theDocumentIsValidOpenAPI() throws {
        guard let python = Self.python else {
            Issue.record("BILLING_TEST_PYTHON is not set: run the tests with `make test`, which makes .venv")
            return
        }
        let script = "import sys, yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open(sys.argv[1])))"
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID()).err")
        defer { try? FileManager.default.removeItem(at: errors) }
        let status = try ChildProcess.spawn([python, "-c", script, Self.document], stdoutPath: "/dev/null", stderrPath: errors.path).wait()
        #expect(status == 0, "\((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
    }

    @Test func schemathesisFindsTheLiveServerTrueToTheDocument() async throws {
        guard let python = Self.python else {
            Issue.record("BILLING_TEST_PYTHON is not set: run the tests with `make test`, which makes .venv")
            return
        }
        let schemathesis = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent("schemathesis").path
        try await TestServer.run { client, server in
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant, ttl: .seconds(600))
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("schemathesis-\(UUID()).out")
            defer { try? FileManager.default.removeItem(at: output) }
            let status = try await ChildProcess.spawn([
                schemathesis, "run", Self.document, "--base-url", "http://127.0.0.1:\(client.port!)",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance",
                "--exclude-path", "/webhooks/stripe", "--hypothesis-max-examples", "25", "--hypothesis-derandomize",
                "-H", "Authorization: Bearer \(admin)",
            ], environment: ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory(), "SCHEMATHESIS_TELEMETRY": "false"],
               stdoutPath: output.path, stderrPath: output.path).exitStatus()
            let report = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            #expect(status == 0, "\(report)")
            #expect(report.contains("9 passed"), "\(report)")
        }
    }
}
