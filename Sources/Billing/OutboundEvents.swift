import AsyncHTTPClient
import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import NIOCore
import StripeAPI

/// What the SaaS product is told, through the outbox, in the transaction of the change: `subscription.changed`,
/// `entitlement.changed`, `credits.changed`, `credits.low`, `payment.failed`. Disabled (nothing written) when no
/// `BILLING_EVENTS_URL` is configured.
public struct Notifier: Sendable {
    public var enabled: Bool
    /// `credits.low` when a decrease takes the available balance below this.
    public var lowCreditsThreshold: Int
    public var grace: Duration
    /// The environment's clock and ids, set by `BillingEnvironment.notifier`: a notifier taken from anywhere else
    /// would stamp its events with no real time or id, so it stops instead.
    var now: @Sendable () -> Date = { preconditionFailure("use BillingEnvironment.notifier, which has the clock") }
    var newID: @Sendable () -> UUID = { preconditionFailure("use BillingEnvironment.notifier, which makes the ids") }

    public init(enabled: Bool, lowCreditsThreshold: Int = 100, grace: Duration = .seconds(3 * 86400)) {
        self.enabled = enabled
        self.lowCreditsThreshold = lowCreditsThreshold
        self.grace = grace
    }

    public static let disabled = Notifier(enabled: false)

    func emit(_ transaction: TenantTransaction, _ type: String, _ data: [String: JSONValue], now: Date? = nil) async throws {
        guard enabled else { return }
        let now = now ?? self.now()
        let id = newID()
        let body: JSONValue = [
            "id": .string("evt_\(id.lowercased)"), "type": .string(type), "created": .integer(Int(now.timeIntervalSince1970)),
            "tenantId": .string(transaction.tenant.lowercased), "data": .object(data),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try await transaction.emit(id: id, type: type, payload: String(decoding: try encoder.encode(body), as: UTF8.self), at: now)
    }

    /// After a credit movement: `credits.changed`, and `credits.low` when a decrease crossed the threshold.
    func creditsChanged(
        _ transaction: TenantTransaction, available: Int, frozen: Int, change: Int, frozenChange: Int = 0, kind: String, reason: String?
    ) async throws {
        guard enabled else { return }
        try await emit(transaction, "credits.changed", [
            "available": .integer(available), "frozen": .integer(frozen), "debt": .integer(max(0, -available)),
            "change": .integer(change), "frozenChange": .integer(frozenChange), "kind": .string(kind),
            "reason": reason.map(JSONValue.string) ?? .null,
        ])
        let before = available - change
        if change < 0, available < lowCreditsThreshold, before >= lowCreditsThreshold {
            try await emit(transaction, "credits.low", [
                "available": .integer(available), "threshold": .integer(lowCreditsThreshold),
            ])
        }
    }

    /// After a subscription row changed: `subscription.changed`, and `entitlement.changed` when the verdict moved.
    func subscriptionChanged(_ transaction: TenantTransaction, before: SubscriptionRecord?, after: SubscriptionRecord, now: Date? = nil) async throws {
        guard enabled, after.isCurrent || before == nil else { return }
        let now = now ?? self.now()
        try await emit(transaction, "subscription.changed", [
            "subscriptionId": .string(after.stripeSubscriptionID), "plan": .string(after.plan), "interval": .string(after.interval),
            "status": .string(after.status), "seats": .integer(after.seats), "cancelAtPeriodEnd": .bool(after.cancelAtPeriodEnd),
            "currentPeriodEnd": after.currentPeriodEnd.map { .string($0.formatted(.iso8601)) } ?? .null,
        ])
        let verdict = { (record: SubscriptionRecord?) -> Bool in
            guard let record, let status = SubscriptionStatus(rawValue: record.status) else { return true }
            return Entitlement.evaluate(status: status, pastDueSince: record.pastDueSince, now: now, grace: grace).entitled
        }
        if verdict(before) != verdict(after) {
            try await emit(transaction, "entitlement.changed", [
                "entitled": .bool(verdict(after)), "plan": .string(after.plan), "status": .string(after.status),
            ])
            // A past-due subscription already out of grace: said now, so the grace job does not say it again.
            if !verdict(after), after.status == "past_due" {
                _ = try await transaction.markGraceNotified(pastDueSince: now, now: now)
            }
        }
    }

    func paymentFailed(_ transaction: TenantTransaction, _ data: [String: JSONValue]) async throws {
        try await emit(transaction, "payment.failed", data)
    }
}

/// Delivers the outbox to `BILLING_EVENTS_URL`: POST, JSON body, `Billing-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">` (Stripe's scheme, so the product verifies it as it verifies Stripe's), retried with backoff.
public struct OutboxDeliverer: Sendable {
    public let outbox: Outbox
    public let url: String
    public let secret: String
    public let retry: InboxRetryPolicy
    public let pollInterval: Duration
    public let timeout: Duration
    public let now: @Sendable () -> Date
    public let logger: Logger

    public init(
        outbox: Outbox, url: String, secret: String, retry: InboxRetryPolicy, pollInterval: Duration, timeout: Duration = .seconds(10),
        now: @escaping @Sendable () -> Date, logger: Logger
    ) {
        self.now = now
        self.outbox = outbox
        self.url = url
        self.secret = secret
        self.retry = retry
        self.pollInterval = pollInterval
        self.timeout = timeout
        self.logger = logger
    }

    public static let signatureHeader = "Billing-Signature"

    public func run() async {
        while !Task.isCancelled {
            do {
                // A delivery stuck on a connection that closed under it is given up once its lease has run out.
                while !Task.isCancelled, try await abandoning(after: timeout + .seconds(60), { try await deliverNext() }) != nil {}
            } catch is CancellationError {
                break
            } catch {
                logger.warning("outbox delivery could not run; trying again", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: pollInterval)
        }
    }

    func deliverNext() async throws -> (OutboxMessage, Outbox.Delivery)? {
        let (url, secret, timeout, now, logger) = (self.url, self.secret, self.timeout, self.now, self.logger)
        // The lease outlasts the HTTP call, so no other deliverer sends the event while this one still may.
        return try await outbox.deliverNext(retry: retry, lease: timeout + .seconds(30)) { message in
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            let body = Array(message.payload.utf8)
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "billingd")
            request.headers.add(name: Self.signatureHeader, value: WebhookSignature.header(
                body: body, secrets: [secret], timestamp: Int(now().timeIntervalSince1970)))
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
                if (200..<300).contains(response.status.code) { return .delivered }
                return .failed("the endpoint answered \(response.status.code)")
            } catch {
                logger.debug("outbox delivery failed", metadata: ["event": "\(message.id)", "error": "\(error)"])
                return .failed("could not reach the endpoint: \(error)")
            }
        }
    }
}
