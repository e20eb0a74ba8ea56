import BillingStore
import Foundation
import Logging
import StripeAPI

/// Heals what webhooks missed: lists Stripe's events created since shortly before the newest one in the inbox and
/// stores the missing ones (the worker applies them as if delivered), and re-reads live subscriptions no event has
/// touched for a while, and any still live for a deleted tenant, feeding Stripe's current object through the inbox
/// as a `customer.subscription.updated` of our own (its id starts with `reconcile_`).
public struct Reconciler: Sendable {
    public let environment: BillingEnvironment
    public let stripe: StripeClient
    /// Listing starts this long before the newest event already stored (events can arrive out of order).
    public let lookback: Duration
    /// A live subscription with no event for this long is read again from Stripe.
    public let subscriptionMaxAge: Duration

    public init(environment: BillingEnvironment, stripe: StripeClient, lookback: Duration, subscriptionMaxAge: Duration) {
        self.environment = environment
        self.stripe = stripe
        self.lookback = lookback
        self.subscriptionMaxAge = subscriptionMaxAge
    }

    var inbox: EventInbox { environment.inbox }
    var liveMode: Bool { environment.liveMode }
    var logger: Logger { environment.logger }

    public struct Report: Sendable, Equatable, Encodable {
        /// Events Stripe listed.
        public var listed = 0
        /// Of those, the ones the inbox did not have.
        public var stored = 0
        /// Subscriptions read again from Stripe.
        public var refreshed = 0
        /// Subscriptions Stripe would not give us.
        public var failed = 0
    }

    public func run() async throws -> Report {
        let now = environment.now()
        var report = Report()
        let newest = try await inbox.newestCreated()
        let since = (newest ?? now).addingTimeInterval(-Double(lookback.components.seconds))
        var cursor: String?
        repeat {
            let page = try await stripe.listEvents(createdAfter: Int(since.timeIntervalSince1970) - 1, startingAfter: cursor)
            for event in page.events {
                report.listed += 1
                if try await store(event) { report.stored += 1 }
            }
            cursor = page.hasMore ? page.events.last?.id : nil
        } while cursor != nil
        let before = now.addingTimeInterval(-Double(subscriptionMaxAge.components.seconds))
        // Quiet subscriptions, and whatever still bills a deleted tenant (its handler cancels it at Stripe).
        let scans = SubscriptionScans(database: environment.database)
        let stale = try await scans.subscriptionsToRefresh(before: before, limit: 500).map { ($0, "") }
        let orphaned = try await scans.liveSubscriptionsOfDeletedTenants(limit: 500).map { ($0, "deleted_") }
        for ((tenant, subscription), tag) in stale + orphaned {
            do {
                if try await refresh(subscription, now: now, tag: tag) { report.refreshed += 1 }
            } catch StripeError.refused(let refusal) where refusal.code == "resource_missing" && !tag.isEmpty {
                // Stripe has no such subscription (deleted there, or of the other mode): it bills no one; it ends here.
                try await endMissing(subscription, tenant: tenant, now: now)
                report.refreshed += 1
            } catch {
                // One subscription Stripe will not give us must not hold up the others.
                report.failed += 1
                logger.warning("could not re-read a subscription from Stripe", metadata: [
                    "subscription": "\(subscription)", "error": "\(error)",
                ])
            }
        }
        if report.stored > 0 || report.refreshed > 0 {
            logger.notice("reconciled with Stripe", metadata: [
                "listed": "\(report.listed)", "stored": "\(report.stored)", "refreshed": "\(report.refreshed)",
            ])
        }
        return report
    }

    func store(_ event: StripeEvent) async throws -> Bool {
        try await inbox.store(
            id: event.id, type: event.type, created: Date(timeIntervalSince1970: Double(event.created)), livemode: event.livemode,
            payload: String(decoding: event.raw, as: UTF8.self),
            ignoredBecause: WebhookReceiver.modeMismatch(eventLivemode: event.livemode, serverLiveMode: liveMode))
    }

    /// A deleted tenant's subscription Stripe does not have: canceled here, so no pass reads it again.
    func endMissing(_ subscriptionID: String, tenant: UUID, now: Date) async throws {
        try await inbox.database.transaction(tenant, operation: "end a missing subscription") { transaction in
            guard var record = try await transaction.subscriptions.lock(subscriptionID), !record.isTerminal else { return }
            let before = record.status
            record.status = .canceled
            try await transaction.subscriptions.update(record, now: now)
            try await transaction.audit.record(
                actor: AuditActor(kind: .system, id: "reconcile"), action: "subscription.canceled",
                before: ["subscription": subscriptionID, "status": before.rawValue],
                after: ["subscription": subscriptionID, "status": "canceled", "reason": "the tenant is deleted and Stripe has no such subscription"])
        }
        logger.notice("a deleted tenant's subscription is missing at Stripe; ended here", metadata: [
            "tenant": "\(tenant)", "subscription": "\(subscriptionID)",
        ])
    }

    /// Stripe's current subscription, through the inbox as an event created now. `tag` names why, so a reason of its
    /// own is not taken for a re-read already made in this window.
    func refresh(_ subscriptionID: String, now: Date, tag: String = "") async throws -> Bool {
        let raw = try await stripe.sendRaw(.get, "/v1/subscriptions/\(subscriptionID)")
        guard let object = try? JSONSerialization.jsonObject(with: raw) else {
            throw StripeError.unreadable("/v1/subscriptions/\(subscriptionID): not JSON")
        }
        let created = Int(now.timeIntervalSince1970)
        // One re-read per subscription per max-age window: a re-read that cannot apply (say an unknown price) is
        // not stored again at every pass.
        let window = created / max(1, Int(subscriptionMaxAge.components.seconds))
        let id = "reconcile_\(tag)\(subscriptionID)_\(window)"
        let event: [String: Any] = [
            "id": id, "object": "event", "type": "customer.subscription.updated", "created": created, "livemode": liveMode,
            "data": ["object": object], "request": ["id": NSNull(), "idempotency_key": "billingd-reconcile"],
        ]
        let payload = try JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])
        return try await inbox.store(
            id: id, type: "customer.subscription.updated", created: Date(timeIntervalSince1970: Double(created)),
            livemode: liveMode, payload: String(decoding: payload, as: UTF8.self), ignoredBecause: nil)
    }
}
