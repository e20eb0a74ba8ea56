import Billing
import BillingStore
import Foundation
import Logging
import JSONRPC
import Prometheus
import Synchronization

/// The server's Prometheus metrics: RPC calls by method and outcome, and their latency.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let knownMethods: Set<String>
    /// When the queues' counts were last read.
    let queuesReadAt = Mutex<ContinuousClock.Instant?>(nil)

    /// Whether the queues' counts are older than `period` (and, if so, marks them read now).
    func queuesDue(every period: Duration) -> Bool {
        let now = ContinuousClock.now
        return queuesReadAt.withLock { last in
            if let last, now - last < period { return false }
            last = now
            return true
        }
    }

    public init(registry: PrometheusCollectorRegistry, knownMethods: Set<String>) {
        self.registry = registry
        self.knownMethods = knownMethods
    }

    static let buckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2), .seconds(5),
    ]

    /// Outcome is `ok` or the tRPC error name; unknown method names are not labels (they would be unbounded).
    func recordCall(method: String, error: RPCError?, duration: Duration) {
        let method = knownMethods.contains(method) ? method : "unknown"
        let outcome = error?.name.rawValue ?? "ok"
        registry.makeCounter(
            descriptor: .init(metricName: "billing_rpc_requests", unitName: "total", helpText: "JSON-RPC calls by method and outcome"),
            labels: [("method", method), ("outcome", outcome)]
        ).increment()
        registry.makeDurationHistogram(
            descriptor: .init(metricName: "billing_rpc_duration", unitName: "seconds", helpText: "JSON-RPC call latency"),
            labels: [("method", method)], buckets: Self.buckets
        ).record(duration)
    }

    func recordRejectedBody(reason: String) {
        registry.makeCounter(
            descriptor: .init(metricName: "billing_rpc_rejected", unitName: "total", helpText: "RPC bodies refused before parsing"),
            labels: [("reason", reason)]
        ).increment()
    }

    func recordWebhook(outcome: String) {
        registry.makeCounter(
            descriptor: .init(metricName: "billing_webhooks", unitName: "total", helpText: "Stripe webhook deliveries by outcome"),
            labels: [("outcome", outcome)]
        ).increment()
    }

    /// Stripe events the worker finished, by outcome.
    public func recordEvent(_ outcome: ProcessOutcome) {
        registry.makeCounter(
            descriptor: .init(metricName: "billing_inbox_processed", unitName: "total", helpText: "Stripe events processed by outcome"),
            labels: [("outcome", outcome.label)]
        ).increment()
    }

    static let inboxStatuses = ["pending", "processed", "ignored", "unresolved", "parked", "stale", "failed"]

    /// Inbox depth by status and the age of the oldest waiting event, read at scrape time (left as they were when
    /// the database does not answer).
    func recordInbox(_ inbox: EventInbox, logger: Logger, now: Date) async {
        let stats: InboxStats
        do {
            stats = try await inbox.stats()
        } catch {
            logger.warning("could not read inbox metrics", metadata: ["error": "\(error)"])
            return
        }
        recordDepth(
            "billing_inbox_events", help: "Stripe events in the inbox by status", statuses: Self.inboxStatuses, counts: stats.counts,
            oldest: "billing_inbox_oldest_waiting", oldestHelp: "Age of the oldest pending or unresolved Stripe event (0 when none waits)",
            since: stats.oldestWaitingSince, now: now)
    }

    static let outboxStatuses = ["pending", "delivered", "failed"]

    /// Outbox depth by status (failed: parked, waiting for `billingd outbox retry`) and the age of the oldest event not
    /// yet delivered, read at scrape time.
    func recordOutbox(_ outbox: Outbox, logger: Logger, now: Date) async {
        let stats: (counts: [String: Int], oldestPendingSince: Date?)
        do {
            stats = try await outbox.stats()
        } catch {
            logger.warning("could not read outbox metrics", metadata: ["error": "\(error)"])
            return
        }
        recordDepth(
            "billing_outbox_events", help: "Events to the product in the outbox by status", statuses: Self.outboxStatuses,
            counts: stats.counts, oldest: "billing_outbox_oldest_pending",
            oldestHelp: "Age of the oldest event to the product not delivered yet (0 when none waits)",
            since: stats.oldestPendingSince, now: now)
    }

    /// A queue's depth by status, and the age in seconds of what has waited longest (0 when nothing waits).
    func recordDepth(
        _ metric: String, help: String, statuses: [String], counts: [String: Int], oldest: String, oldestHelp: String,
        since: Date?, now: Date
    ) {
        for status in statuses {
            registry.makeGauge(descriptor: .init(metricName: metric, helpText: help), labels: [("status", status)])
                .set(Double(counts[status] ?? 0))
        }
        registry.makeGauge(descriptor: .init(metricName: oldest, unitName: "seconds", helpText: oldestHelp))
            .set(since.map { max(0, now.timeIntervalSince($0)) } ?? 0)
    }
}
