import ArgumentParser
import BillingDevSupport
import BillingServer
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import StripeStandIn

/// `billingd dev`: a local PostgreSQL in `.data/`, migrations, a demo tenant and the server, in one command.
struct Dev: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run everything locally: PostgreSQL in .data/, migrations, a demo tenant, and the server.")

    @Option(help: "Folder for the local database and generated secrets.")
    var dataDir: String = ".data"
    @Option(help: "Port of the local PostgreSQL (127.0.0.1 only).")
    var pgPort: Int = 54329
    @Option(help: "HTTP port of the server.")
    var port: Int = 8080
    @Option(help: "Port of the in-process Stripe stand-in (used unless STRIPE_SECRET_KEY is set).")
    var stripePort: Int = 12111

    static let demoTenant = UUID(uuidString: "00000000-0000-4000-8000-00000000d3e0")!

    func run() async throws {
        bootstrapLogging()
        limitMallocArenas()
        let logger = Logger(label: "billingd.dev")
        let base = URL(fileURLWithPath: dataDir, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
            .standardizedFileURL
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        let secrets = try DevSecrets.loadOrCreate(at: base.appendingPathComponent("secrets.env"))

        let cluster = LocalCluster(directory: base.appendingPathComponent("postgres"), port: pgPort, password: secrets.superuserPassword)
        try cluster.start(durable: true)
        try await cluster.superuserURL.createDatabase("billing", logger: logger)

        var environment = ProcessInfo.processInfo.environment
        environment["DATABASE_OWNER_URL", default: "postgres://postgres:\(secrets.superuserPassword)@127.0.0.1:\(pgPort)/billing"] += ""
        environment["DATABASE_URL", default: "postgres://billing_app:\(secrets.appPassword)@127.0.0.1:\(pgPort)/billing"] += ""
        environment["BILLING_JWT_SECRET", default: secrets.jwtSecret] += ""
        environment["BILLING_HTTP_PORT", default: String(port)] += ""
        // Without a Stripe key, the stand-in plays Stripe, in this process, on its own port.
        let useStandIn = (environment["STRIPE_SECRET_KEY"] ?? "").isEmpty
        if useStandIn {
            environment["STRIPE_SECRET_KEY"] = "sk_test_stand_in"
            environment["STRIPE_API_BASE"] = "http://127.0.0.1:\(stripePort)"
            environment["STRIPE_WEBHOOK_SECRETS"] = secrets.webhookSecret
        }
        let configuration = try await BillingConfiguration.load(environment: environment)

        let jobs = Jobs(configuration: configuration, logger: logger)
        _ = try await jobs.migrate()
        try await jobs.provisionDemoTenant(id: Self.demoTenant, name: "Demo Tenant", email: "billing@demo.example")

        let authority = await TokenAuthority(secrets: try configuration.requireJWTSecrets())
        let token = try await authority.issue(role: .admin, tenant: Self.demoTenant, subject: "demo-admin", ttl: .seconds(7 * 24 * 3600))
        let url = "http://\(configuration.httpHost):\(configuration.httpPort)"
        let stripeLine = useStandIn
            ? "Stripe: the local stand-in at http://127.0.0.1:\(stripePort) (hosted Checkout pages there; webhooks to \(url)/webhooks/stripe)"
            : "Stripe: \(configuration.stripeAPIBase)"
        // Written straight to the file descriptor: print() is block-buffered when stdout is not a terminal.
        FileHandle.standardOutput.write(Data("""

            billingd dev is starting at \(url)
              \(stripeLine)
              demo tenant: \(Self.demoTenant.uuidString.lowercased())
              admin token (7 days): \(token)

              billing page (as the demo admin): \(url)/billing#token=\(token)

              curl -s \(url)/rpc -H 'Content-Type: application/json' \\
                -H 'Authorization: Bearer \(token)' \\
                -d '{"jsonrpc":"2.0","id":1,"method":"billing.status"}'

            """.utf8))

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let app = try await buildApplication(configuration: configuration, registry: registry)
        var services: [any Service] = [app]
        if useStandIn {
            let state = StandInState(configuration: StandInConfiguration(
                publicURL: "http://127.0.0.1:\(stripePort)", webhookURL: "\(url)/webhooks/stripe",
                webhookSecret: secrets.webhookSecret, prices: try configuration.loadCatalog().standInPrices,
                clock: BillingConfiguration.systemClock))
            services.append(buildStandInApplication(state: state, port: stripePort))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Secrets `billingd dev` generates once and keeps in `.data/secrets.env` (never committed).
struct DevSecrets {
    var superuserPassword: String
    var appPassword: String
    var jwtSecret: String
    var webhookSecret: String

    static func loadOrCreate(at file: URL) throws -> DevSecrets {
        var values: [String: String] = [:]
        if let text = try? String(contentsOf: file, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                if parts.count == 2 { values[parts[0]] = parts[1] }
            }
        }
        func random() -> String {
            (0..<32).map { _ in String("abcdefghijklmnopqrstuvwxyz0123456789".randomElement()!) }.joined()
        }
        let secrets = DevSecrets(
            superuserPassword: values["PG_SUPERUSER_PASSWORD"] ?? random(),
            appPassword: values["APP_DB_PASSWORD"] ?? random(),
            jwtSecret: values["JWT_SECRET"] ?? random() + random(),
            webhookSecret: values["STRIPE_WEBHOOK_SECRET"] ?? "whsec_" + random())
        let text = """
            PG_SUPERUSER_PASSWORD=\(secrets.superuserPassword)
            APP_DB_PASSWORD=\(secrets.appPassword)
            JWT_SECRET=\(secrets.jwtSecret)
            STRIPE_WEBHOOK_SECRET=\(secrets.webhookSecret)

            """
        // Created readable by its owner only, before any secret is written into it.
        if !FileManager.default.fileExists(atPath: file.path) {
            FileManager.default.createFile(atPath: file.path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        try Data(text.utf8).write(to: file)
        return secrets
    }
}
