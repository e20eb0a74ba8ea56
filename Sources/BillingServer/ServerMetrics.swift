import Foundation
import JSONRPC
import Prometheus

/// The server's Prometheus metrics: RPC calls by method and outcome, and their latency.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let knownMethods: Set<String>

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
}
