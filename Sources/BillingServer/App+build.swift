import Billing
import BillingCore
import BillingStore
import Foundation
import Hummingbird
import JSONRPC
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import StripeAPI

/// Builds the application that `billingd serve` runs and the tests drive (on port 0).
public func buildApplication(
    configuration: BillingConfiguration,
    registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    logger: Logger? = nil,
    now: @escaping @Sendable () -> Date = BillingConfiguration.systemClock
) async throws -> some ApplicationProtocol {
    var logger = logger ?? Logger(label: "billingd")
    logger.logLevel = configuration.logLevel
    // Token expiry is checked against the system's clock, as JWTKit checks a token's `exp`, whatever `now` says.
    let tokens = await TokenAuthority(secrets: try configuration.requireJWTSecrets())
    let database = BillingDatabase(
        url: try configuration.requireDatabaseURL(), maxConnections: configuration.databasePoolSize, logger: logger)
    let migrations = try Migration.load(directory: configuration.migrationsDirectory)
    let openRPC = try loadOpenRPC(configuration.openRPCFile)

    let environment = try configuration.environment(database: database, logger: logger, now: now)
    let api = BillingAPI(environment: environment, openRPC: openRPC)
    let methods = api.registry()
    let metrics = ServerMetrics(registry: registry, knownMethods: Set(methods.methods.keys))
    var rpc = JSONRPCServer(registry: methods, limits: BillingAPI.inputLimits)
    rpc.observe = { method, error, duration in metrics.recordCall(method: method, error: error, duration: duration) }
    rpc.reportInternal = { method, error, caller in
        caller.logger.error("rpc method failed", metadata: ["method": "\(method)", "error": "\(error)"])
    }

    let router = Router()
    router.add(middleware: LogRequestPathsMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: RequestIDMiddleware())
    RPCController(rpc: rpc, tokens: tokens, metrics: metrics).addRoutes(to: router)
    TRPCController(transport: TRPCTransport(server: rpc), tokens: tokens).addRoutes(to: router)
    WebhookController(
        receiver: WebhookReceiver(
            inbox: EventInbox(database: database), secrets: configuration.webhookSecrets, tolerance: configuration.webhookTolerance,
            liveMode: configuration.stripeLiveMode, storeTimeout: configuration.webhookStoreTimeout, now: now),
        metrics: metrics
    ).addRoutes(to: router)
    try await BillingPage(directory: configuration.webDirectory, catalog: environment.catalog).addRoutes(to: router)
    try InvoicePage(directory: configuration.webDirectory).addRoutes(to: router, api: api, tokens: tokens)
    OperationsController(
        database: database, migrations: migrations, tokens: tokens, metrics: metrics, registry: registry,
        metricsToken: configuration.metricsToken, refresh: configuration.metricsRefresh,
        // Queue ages are measured against the wall clock, as the database stamps the rows.
        now: BillingConfiguration.systemClock
    ).addRoutes(to: router)

    var services: [any Service] = [database.service]
    if let owner = configuration.databaseOwnerURL {
        services.append(MigrationService(migrator: Migrator(migrations: migrations, logger: logger), ownerURL: owner, appURL: configuration.databaseURL))
    }
    if let interval = configuration.planChangeInterval {
        services.append(PlanChangeService(environment: environment, interval: interval, lead: configuration.planChangeLead, logger: logger))
    }
    services += backgroundServices(configuration: configuration, environment: environment, metrics: metrics)
    return Application(
        router: router,
        server: .http1(
            idleTimeout: configuration.httpIdleTimeout, headTimeout: configuration.httpHeadTimeout,
            bodyTimeout: configuration.httpBodyTimeout, logger: logger),
        configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: "billingd"),
        services: services,
        logger: logger)
}

/// The inbox worker (unless BILLING_INBOX_WORKERS=0) and, with Stripe configured, the reconciliation job.
func backgroundServices(configuration: BillingConfiguration, environment: BillingEnvironment, metrics: ServerMetrics?) -> [any Service] {
    var services: [any Service] = []
    if configuration.inboxWorkers > 0 {
        services.append(InboxWorkerService(worker: makeInboxWorker(configuration: configuration, environment: environment, metrics: metrics)))
    }
    if let url = configuration.eventsURL, let secret = configuration.eventsSecret {
        services.append(OutboxService(deliverer: OutboxDeliverer(
            outbox: Outbox(database: environment.database), url: url, secret: secret, retry: configuration.eventsRetry,
            pollInterval: configuration.eventsPollInterval,
            // A signature's timestamp is the wall clock's, as the receiver checks it, whatever the server's clock says.
            now: BillingConfiguration.systemClock, logger: environment.logger)))
    }
    if let stripe = environment.stripe.client, let interval = configuration.reconcileInterval {
        services.append(ReconciliationService(
            reconciler: makeReconciler(configuration: configuration, environment: environment, stripe: stripe),
            interval: interval, logger: environment.logger))
    }
    return services
}

public func makeInboxWorker(configuration: BillingConfiguration, environment: BillingEnvironment, metrics: ServerMetrics?) -> InboxWorker {
    InboxWorker(
        inbox: environment.inbox,
        processor: StripeEventProcessor(environment: environment),
        settings: .init(
            concurrency: max(1, configuration.inboxWorkers), pollInterval: configuration.inboxPollInterval,
            retry: configuration.inboxRetry, eventTimeout: configuration.inboxEventTimeout),
        listenURL: configuration.databaseURL, logger: environment.logger,
        observe: { outcome in metrics?.recordEvent(outcome) })
}

public func makeReconciler(configuration: BillingConfiguration, environment: BillingEnvironment, stripe: StripeClient) -> Reconciler {
    Reconciler(
        environment: environment, stripe: stripe, lookback: configuration.reconcileLookback,
        subscriptionMaxAge: configuration.reconcileSubscriptionMaxAge)
}

func loadOpenRPC(_ file: URL) throws -> JSONValue {
    guard let data = FileManager.default.contents(atPath: file.path) else {
        throw ConfigurationError.invalid("BILLING_RESOURCES_DIR", "cannot read \(file.path)")
    }
    return try JSONDecoder().decode(JSONValue.self, from: data)
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs; Foundation's trimmingCharacters bridges through NSString on
    /// Linux, which showed in the profile of every request.
    var trimmedOfSpaces: Substring {
        let text = Substring(self)
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return text[first...last]
    }
}
