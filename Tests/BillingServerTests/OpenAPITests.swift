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

    @Test func theDocumentIsValidOpenAPI() async throws {
        guard let python = Self.python else {
            Issue.record("BILLING_TEST_PYTHON is not set: run the tests with `make test`, which makes .venv")
            return
        }
        let script = "import sys, yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open(sys.argv[1])))"
        let validated = try await ProgramRun.run([python, "-c", script, Self.document])
        #expect(validated.succeeded, "\(validated.errors)")
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
            let run = try await ProgramRun.run([
                schemathesis, "run", Self.document, "--base-url", "http://127.0.0.1:\(client.port!)",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance",
                "--exclude-path", "/webhooks/stripe", "--hypothesis-max-examples", "25", "--hypothesis-derandomize",
                "-H", "Authorization: Bearer \(admin)",
            ], environment: ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory(), "SCHEMATHESIS_TELEMETRY": "false"])
            let report = run.output + run.errors
            #expect(run.succeeded, "\(report)")
            #expect(report.contains("9 passed"), "\(report)")
        }
    }
}
