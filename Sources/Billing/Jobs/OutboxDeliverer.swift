import AsyncHTTPClient
import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import NIOCore
import StripeAPI

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
