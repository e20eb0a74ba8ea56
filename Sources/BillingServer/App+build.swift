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

/// The largest JSON-RPC body accepted.
let maxRPCBodyBytes = 1 << 20
/// Without a valid token only the public methods run, whose params are small.
let maxAnonymousRPCBodyBytes = 64 << 10

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

    let server = rpc
    let router = Router()
    router.add(middleware: LogRequestPathsMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: RequestIDMiddleware())
    router.post("/rpc") { request, context in
        try await handleRPC(request, context: context, rpc: server, tokens: tokens, metrics: metrics)
    }
    let webhooks = WebhookReceiver(
        inbox: EventInbox(database: database), secrets: configuration.webhookSecrets,
        tolerance: configuration.webhookTolerance, liveMode: configuration.stripeLiveMode,
        storeTimeout: configuration.webhookStoreTimeout,
        now: now)
    router.post("/webhooks/stripe") { request, context in
        try await handleWebhook(request, context: context, receiver: webhooks, metrics: metrics)
    }
    let trpc = TRPCTransport(server: server)
    router.get("/trpc/{paths}") { request, context in
        try await handleTRPC(request, context: context, verb: .get, transport: trpc, tokens: tokens)
    }
    router.post("/trpc/{paths}") { request, context in
        try await handleTRPC(request, context: context, verb: .post, transport: trpc, tokens: tokens)
    }
    try await BillingPage(directory: configuration.webDirectory, catalog: environment.catalog).addRoutes(to: router)
    let invoices = try InvoicePage(directory: configuration.webDirectory)
    router.get("/invoices/{id}") { request, context in
        try await invoices.respond(request, context: context, api: api, tokens: tokens)
    }
    router.get("/healthz") { _, _ in
        Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
    }
    router.get("/readyz") { _, context in
        await readiness(database: database, migrations: migrations, logger: context.logger)
    }
    let inbox = EventInbox(database: database)
    let outbox = Outbox(database: database)
    let metricsToken = configuration.metricsToken
    let refresh = configuration.metricsRefresh
    router.get("/metrics") { request, context in
        // Operators' business: the metrics token (Prometheus's scrape config), or an operator's JWT.
        guard await mayReadMetrics(request.headers[.authorization], token: metricsToken, tokens: tokens) else {
            return Response(
                status: .unauthorized, headers: [.contentType: "text/plain", .wwwAuthenticate: "Bearer"],
                body: .init(byteBuffer: ByteBuffer(string: "/metrics needs Authorization: Bearer <BILLING_METRICS_TOKEN> or an operator token\n")))
        }
        // The queues' counts are read at most once per refresh period, however often Prometheus scrapes.
        if metrics.queuesDue(every: refresh) {
            await metrics.recordInbox(inbox, logger: context.logger, now: now())
            await metrics.recordOutbox(outbox, logger: context.logger, now: now())
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }

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
            pollInterval: configuration.eventsPollInterval, now: environment.now, logger: environment.logger)))
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

/// `POST /rpc`: Content-Type and size are checked before the body is parsed.
func handleRPC(
    _ request: Request, context: some RequestContext, rpc: JSONRPCServer<Caller>, tokens: TokenAuthority, metrics: ServerMetrics
) async throws -> Response {
    let contentType = request.headers[.contentType] ?? ""
    let mediaType = contentType.split(separator: ";").first.map { $0.trimmedOfSpaces.lowercased() }
    guard mediaType == "application/json" else {
        metrics.recordRejectedBody(reason: "content_type")
        return rpcErrorResponse(.unsupportedMediaType, RPCError(
            .UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json, got '\(contentType)'"))
    }
    // The token is checked before the body is read: without a valid one only the public methods can run, and their
    // params are small, so such a request may carry far less.
    let authentication = await tokens.authenticate(header: request.headers[.authorization])
    let (limit, tooLarge) = bodyLimit(authentication)
    if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
        metrics.recordRejectedBody(reason: "too_large")
        return rpcErrorResponse(.contentTooLarge, tooLarge)
    }
    let body: ByteBuffer
    do {
        body = try await request.body.collect(upTo: limit)
    } catch {
        metrics.recordRejectedBody(reason: "too_large")
        return rpcErrorResponse(.contentTooLarge, tooLarge)
    }
    let caller = Caller(authentication: authentication, requestID: context.id, logger: context.logger)
    switch await rpc.respond(to: body.readableBytesView, context: caller) {
    case .none:
        return Response(status: .noContent)
    case .body(let bytes):
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Whether the Authorization header is the metrics token (compared in constant time) or an operator's JWT.
func mayReadMetrics(_ header: String?, token: String?, tokens: TokenAuthority) async -> Bool {
    if let token, let header, header.hasPrefix("Bearer ") {
        let given = Array(header.dropFirst("Bearer ".count).utf8)
        let expected = Array(token.utf8)
        if given.count == expected.count, zip(given, expected).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 { return true }
    }
    if case .authenticated(let principal) = await tokens.authenticate(header: header), principal.role == .operator { return true }
    return false
}

/// How much body a request may carry, and the error past it: 1 MiB with a valid token, 64 KiB without one.
func bodyLimit(_ authentication: Authentication) -> (Int, RPCError) {
    if case .authenticated = authentication {
        return (maxRPCBodyBytes, RPCError(.PAYLOAD_TOO_LARGE, "the request body is larger than 1 MiB; split the batch or send less"))
    }
    return (maxAnonymousRPCBodyBytes, RPCError(
        .PAYLOAD_TOO_LARGE, "a request without a valid token may carry at most 64 KiB (the public methods need no more)"))
}

/// `/trpc/*`: tRPC's HTTP transport over the same registry as `/rpc`, with the same bearer tokens.
func handleTRPC(
    _ request: Request, context: some RequestContext, verb: TRPCTransport<Caller>.Verb, transport: TRPCTransport<Caller>,
    tokens: TokenAuthority
) async throws -> Response {
    let paths = context.parameters.get("paths") ?? ""
    let batch = ["1", "true"].contains(request.uri.queryParameters.get("batch") ?? "")
    // As /rpc: the token first, and a smaller body without a valid one.
    let authentication = await tokens.authenticate(header: request.headers[.authorization])
    var input: [UInt8]?
    switch verb {
    case .get:
        input = request.uri.queryParameters.get("input").map { Array($0.utf8) }
    case .post:
        let (limit, tooLarge) = bodyLimit(authentication)
        guard let body = try? await request.body.collect(upTo: limit) else {
            return trpcResponse(transport.answer([.failure(tooLarge)], names: [paths], batch: false))
        }
        input = Array(body.readableBytesView)
    }
    let caller = Caller(authentication: authentication, requestID: context.id, logger: context.logger)
    return trpcResponse(await transport.respond(verb: verb, paths: paths, batch: batch, input: input, context: caller))
}

func trpcResponse(_ answer: TRPCTransport<Caller>.Answer) -> Response {
    Response(
        status: .init(code: answer.status), headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
}

/// Stripe events are well under this.
let maxWebhookBodyBytes = 1 << 20

/// `POST /webhooks/stripe`: 2xx only once the event is durable; 400 for what is not from Stripe; 503 to be retried.
func handleWebhook(
    _ request: Request, context: some RequestContext, receiver: WebhookReceiver, metrics: ServerMetrics
) async throws -> Response {
    func answer(_ status: HTTPResponse.Status, _ fields: [String: Any]) -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
    let body: ByteBuffer
    do {
        body = try await request.body.collect(upTo: maxWebhookBodyBytes)
    } catch {
        metrics.recordWebhook(outcome: "too_large")
        return answer(.contentTooLarge, ["error": "the body is larger than 1 MiB; Stripe events are smaller"])
    }
    let outcome = await receiver.receive(
        body: Array(body.readableBytesView), signature: request.headers[.init("Stripe-Signature")!], logger: context.logger)
    switch outcome {
    case .accepted(let id, let duplicate, let ignored):
        metrics.recordWebhook(outcome: ignored ? "ignored" : duplicate ? "duplicate" : "stored")
        return answer(.ok, ["received": true, "id": id, "duplicate": duplicate, "ignored": ignored])
    case .rejected(let reason):
        metrics.recordWebhook(outcome: "rejected")
        return answer(.badRequest, ["error": reason])
    case .unavailable(let reason):
        metrics.recordWebhook(outcome: "unavailable")
        return answer(.serviceUnavailable, ["error": reason])
    }
}

func rpcErrorResponse(_ status: HTTPResponse.Status, _ error: RPCError) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: JSONRPCServer<Caller>.errorBody(error))))
}

/// Ready when the database answers as the server's role and every migration of this build is applied.
func readiness(database: BillingDatabase, migrations: [Migration], logger: Logger) async -> Response {
    func answer(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text + "\n")))
    }
    do {
        let applied = try await database.appliedMigrations()
        let pending = migrations.map(\.version).filter { !applied.contains($0) }
        guard pending.isEmpty else {
            return answer(.serviceUnavailable, "pending migrations: \(pending.joined(separator: ", ")); run billingd migrate")
        }
        return answer(.ok, "ready")
    } catch {
        logger.warning("readiness check failed", metadata: ["error": "\(error)"])
        return answer(.serviceUnavailable, "database unreachable")
    }
}

/// Logs each request's method and path at debug level, never its query: an invoice link's query is its signature, a
/// credential for as long as the link lives (Hummingbird's own request logging writes the whole URI).
struct LogRequestPathsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        context.logger.debug("Request", metadata: [
            "hb.request.path": .string(request.uri.path), "hb.request.method": .string(request.method.rawValue),
        ])
        return try await next(request, context)
    }
}

/// Echoes the request id that every log line of the request carries, so a client can quote it.
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.init("X-Request-Id")!] = context.id
        return response
    }
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
