import Testing
import Billing
import BillingCore
import BillingServer
import BillingStore
import BillingDevSupport
import Configuration
import Foundation
import Hummingbird
import HummingbirdTesting
import JSONRPC
import Logging
import NIOCore
import StripeAPI
import StripeStandIn

/// The shipped application on port 0 against a fresh, migrated database, as the server's own role.
struct TestServer {
    static let secrets = ["first-secret-for-tests-0123456789abcdef", "second-secret-for-tests-0123456789abcdef"]

    let database: TestDatabase
    let tokens: TokenAuthority
    /// The Stripe stand-in the server talks to, when the test asked for one.
    let standIn: StandInState?
    let stripe: StripeClient?

    /// What `billingd` needs to run a job against this server's database and its Stripe stand-in.
    var commandEnvironment: [String: String] {
        var environment = ["DATABASE_URL": database.appURL.secretURLString]
        if let stripe {
            environment["STRIPE_SECRET_KEY"] = "sk_test_cli"
            environment["STRIPE_API_BASE"] = stripe.configuration.apiBase
        }
        return environment
    }

    static func configuration(
        _ database: TestDatabase, extra: [String: String] = [:], priceOverrides: [String: String] = [:]
    ) throws -> BillingConfiguration {
        var environment = [
            "DATABASE_URL": database.appURL.secretURLString,
            "BILLING_JWT_SECRET": secrets.joined(separator: ","),
            "BILLING_HTTP_PORT": "0",
            "BILLING_RESOURCES_DIR": TestPaths.repositoryRoot.path,
            "BILLING_PUBLIC_URL": publicURL,
            "BILLING_LOG_LEVEL": "warning",
            // Tests run the plan-change and invoicing job themselves (a tick of the server's own could come first).
            "BILLING_PLAN_CHANGE_INTERVAL_MS": "0",
            // Tests of other things make more changes a minute than a person would; RateLimitTests sets its own.
            "BILLING_RATE_LIMIT_CHANGES_PER_MINUTE": "1000", "BILLING_RATE_LIMIT_PORTAL_PER_MINUTE": "1000",
            "BILLING_RATE_LIMIT_REFUNDS_PER_MINUTE": "1000", "BILLING_RATE_LIMIT_INVOICE_ACTIONS_PER_MINUTE": "1000",
            // Tests read the queues' counts right after changing them.
            "BILLING_METRICS_REFRESH_SECONDS": "0",
        ]
        environment.merge(extra) { $1 }
        let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment))
        return try BillingConfiguration(reader: reader, priceOverrides: priceOverrides)
    }

    static let publicURL = "http://billing.test:8080"

    /// Runs `body` against a live server; with `stripe`, against a live Stripe stand-in that knows the catalog's prices.
    /// `now` is the server's clock (a test clock's time, for tests that advance one); `standIn` adjusts the stand-in's
    /// account settings.
    static func run(
        extra: [String: String] = [:], stripe: Bool = false, database given: TestDatabase? = nil,
        now: @escaping @Sendable () -> Date = Date.init,
        standIn adjust: @Sendable (inout StandInConfiguration) -> Void = { _ in },
        _ body: @escaping @Sendable (any TestClientProtocol, TestServer) async throws -> Void
    ) async throws {
        let database = if let given { given } else { try await TestCluster.shared.freshDatabase() }
        let tokens = await TokenAuthority(secrets: [secrets[0]])
        guard stripe else {
            let app = try await buildApplication(configuration: try configuration(database, extra: extra), now: now)
            let server = TestServer(database: database, tokens: tokens, standIn: nil, stripe: nil)
            try await app.test(.live) { client in try await body(client, server) }
            return
        }
        let catalog = try configuration(database).loadCatalog()
        var standInConfiguration = StandInConfiguration(
            publicURL: "http://stand-in.test", webhookURL: nil, webhookSecret: "whsec_test", prices: catalog.standInPrices,
            clock: Date.init)
        adjust(&standInConfiguration)
        let state = StandInState(configuration: standInConfiguration)
        try await buildStandInApplication(state: state, port: 0).test(.live) { standIn in
            let base = "http://127.0.0.1:\(standIn.port!)"
            var environment = [
                "STRIPE_SECRET_KEY": "sk_test_server_tests", "STRIPE_API_BASE": base, "BILLING_PUBLIC_URL": publicURL,
                "BILLING_STRIPE_RETRY_INITIAL_MS": "1", "BILLING_STRIPE_TIMEOUT_MS": "2000",
            ]
            environment.merge(extra) { $1 }
            let app = try await buildApplication(configuration: try configuration(database, extra: environment), now: now)
            let client = StripeClient(configuration: StripeConfiguration(apiBase: base, secretKey: "sk_test_server_tests"))
            let server = TestServer(database: database, tokens: tokens, standIn: state, stripe: client)
            try await app.test(.live) { client in try await body(client, server) }
            // Every request the real server sent on its money paths was one Stripe's definitions accept.
            let refused = await state.refusedRequests()
            #expect(refused.isEmpty, "the server sent requests Stripe would refuse: \(refused)")
        }
    }

    func token(_ role: Role, tenant: UUID? = nil, ttl: Duration = .seconds(300)) async throws -> String {
        try await tokens.issue(role: role, tenant: role.actsAcrossTenants ? nil : tenant, subject: "user-\(role.rawValue)", ttl: ttl)
    }

    /// Provisions a tenant through the API, as the SaaS backend would.
    func provision(_ client: some TestClientProtocol, name: String = "Acme", id: UUID = UUID()) async throws -> UUID {
        let response = try await client.rpc(
            "tenants.provision", ["tenantId": .string(id.uuidString), "name": .string(name), "email": "billing@acme.example"],
            token: try await token(.service))
        guard response["result"]?["created"] == true else { throw TestFailure("provisioning failed: \(response)") }
        return id
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension TestClientProtocol {
    /// POSTs a raw body to /rpc.
    func post(
        _ body: String, token: String? = nil, contentType: String = "application/json", path: String = "/rpc"
    ) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: contentType]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    /// One JSON-RPC call; the decoded response object.
    func rpc(_ method: String, _ params: [String: JSONValue]? = nil, token: String? = nil, id: JSONValue = 1) async throws -> JSONValue {
        var request: [String: JSONValue] = ["jsonrpc": "2.0", "method": .string(method), "id": id]
        if let params { request["params"] = .object(params) }
        let body = String(decoding: try JSONEncoder().encode(JSONValue.object(request)), as: UTF8.self)
        let response = try await post(body, token: token)
        guard response.status == .ok else { throw TestFailure("HTTP \(response.status)") }
        return try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
    }
}

extension JSONValue {
    var errorCode: Int? {
        if case .integer(let code)? = self["error"]?["code"] { code } else { nil }
    }
    var errorName: String? { self["error"]?["data"]?["code"]?.stringValue }
    var errorMessage: String { self["error"]?["message"]?.stringValue ?? "" }
}
