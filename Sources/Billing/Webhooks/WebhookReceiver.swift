import BillingStore
import Foundation
import Logging
import StripeAPI

/// `POST /webhooks/stripe`: verify the signature on the raw body, then store the event in the inbox by its id.
/// Processing happens later, in the inbox worker's own transactions.
public struct WebhookReceiver: Sendable {
    public let inbox: EventInbox
    public let secrets: [String]
    public let tolerance: Duration
    /// Whether the server's Stripe key is a live one (`sk_live_`): events of the other mode are ignored.
    public let liveMode: Bool
    public let now: @Sendable () -> Date
    /// How long storing may take before Stripe is told 503 (it retries; a late insert makes the retry a duplicate).
    public let storeTimeout: Duration

    public init(
        inbox: EventInbox, secrets: [String], tolerance: Duration, liveMode: Bool, storeTimeout: Duration = .seconds(10),
        now: @escaping @Sendable () -> Date
    ) {
        self.inbox = inbox
        self.storeTimeout = storeTimeout
        self.secrets = secrets
        self.tolerance = tolerance
        self.liveMode = liveMode
        self.now = now
    }

    public enum Outcome: Sendable, Equatable {
        /// Stored now (or already stored: a repeat delivery changes nothing).
        case accepted(eventID: String, duplicate: Bool, ignored: Bool)
        /// Not from Stripe, or not an event: 400, and stored nowhere.
        case rejected(String)
        /// Verified but not stored (the database is unavailable, or no secret is configured): 503, so Stripe retries.
        case unavailable(String)
    }

    struct EventHeader: Decodable {
        var id: String
        var type: String
        var created: Int
        var livemode: Bool
        var object: String?
    }

    /// Why an event of the other mode than the server's key is kept but not processed; nil when the modes match.
    static func modeMismatch(eventLivemode: Bool, serverLiveMode: Bool) -> String? {
        eventLivemode == serverLiveMode
            ? nil : "livemode \(eventLivemode) does not match this server's \(serverLiveMode ? "live" : "test") key"
    }

    public func receive(body: [UInt8], signature: String?, logger: Logger) async -> Outcome {
        guard !secrets.isEmpty else {
            logger.error("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRETS is not set")
            return .unavailable("webhook secrets are not configured")
        }
        do {
            try WebhookSignature.verify(header: signature, body: body, secrets: secrets, now: now(), tolerance: tolerance)
        } catch {
            logger.warning("refused a webhook", metadata: ["reason": "\(error)"])
            return .rejected("\(error)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return .rejected("the body is not a JSON object")
        }
        // An id that no text column can hold (a NUL) could never be stored: refused, not 503 for Stripe to retry forever.
        guard let id = json["id"] as? String, !id.isEmpty, id.count <= 255, !id.utf8.contains(0) else {
            return .rejected("the body has no event id to store it by (1 to 255 characters, no NUL)")
        }
        // Signed by Stripe but of no use here (a thin v2 event, an object that is no event): kept as ignored and
        // answered 200, since a 400 would have Stripe retry it for days and then disable the endpoint.
        let event: EventHeader
        let ignoredBecause: String?
        if let header = try? JSONDecoder().decode(EventHeader.self, from: Data(body)), header.object == nil || header.object == "event" {
            event = header
            ignoredBecause = Self.modeMismatch(eventLivemode: event.livemode, serverLiveMode: liveMode)
        } else {
            let object = json["object"] as? String
            event = EventHeader(id: id, type: json["type"] as? String ?? "(none)", created: Int(now().timeIntervalSince1970),
                                livemode: json["livemode"] as? Bool ?? false, object: object)
            ignoredBecause = object?.hasPrefix("v2.") == true
                ? "a thin \(object!) event: this server reads only v1 snapshot events"
                : "not a usable v1 event (object \(object.map { "'\($0)'" } ?? "missing"), with id, type, created and livemode)"
        }
        do {
            let inbox = self.inbox
            // Answered in time even when the store is stuck on a connection that closed under it: Stripe retries.
            let stored = try await abandoning(after: storeTimeout) {
                try await inbox.store(
                    id: event.id, type: event.type, created: Date(timeIntervalSince1970: Double(event.created)),
                    livemode: event.livemode, payload: String(decoding: body, as: UTF8.self), ignoredBecause: ignoredBecause)
            }
            if let ignoredBecause {
                logger.notice("ignored a Stripe event", metadata: ["event": "\(event.id)", "reason": "\(ignoredBecause)"])
            }
            return .accepted(eventID: event.id, duplicate: !stored, ignored: ignoredBecause != nil)
        } catch {
            logger.error("could not store a Stripe event", metadata: ["event": "\(event.id)", "error": "\(error)"])
            return .unavailable("the event could not be stored")
        }
    }
}
