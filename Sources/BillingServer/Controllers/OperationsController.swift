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

/// What operators and their tools read: `/healthz`, `/readyz`, `/metrics`.
struct OperationsController {
    let database: BillingDatabase
    let migrations: [Migration]
    let tokens: TokenAuthority
    let metrics: ServerMetrics
    let registry: PrometheusCollectorRegistry
    /// BILLING_METRICS_TOKEN, and how old the queues' counts may be.
    let metricsToken: String?
    let refresh: Duration
    let now: @Sendable () -> Date

    func addRoutes(to router: Router<some RequestContext>) {
        let (database, migrations, tokens, metrics, registry, metricsToken, refresh, now) =
            (database, migrations, tokens, metrics, registry, metricsToken, refresh, now)
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("/readyz") { _, context in
            await readiness(database: database, migrations: migrations, logger: context.logger)
        }
        let inbox = EventInbox(database: database)
        let outbox = Outbox(database: database)
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
