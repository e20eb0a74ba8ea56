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
        try await transaction.outbox.emit(id: id, type: type, payload: String(decoding: try encoder.encode(body), as: UTF8.self), at: now)
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
            "status": .string(after.status.rawValue), "seats": .integer(after.seats), "cancelAtPeriodEnd": .bool(after.cancelAtPeriodEnd),
            "currentPeriodEnd": after.currentPeriodEnd.map { .string($0.formatted(.iso8601)) } ?? .null,
        ])
        let verdict = { (record: SubscriptionRecord?) -> Bool in
            guard let record else { return true }
            return Entitlement.evaluate(status: record.status, pastDueSince: record.pastDueSince, now: now, grace: grace).entitled
        }
        if verdict(before) != verdict(after) {
            try await emit(transaction, "entitlement.changed", [
                "entitled": .bool(verdict(after)), "plan": .string(after.plan), "status": .string(after.status.rawValue),
            ])
            // A past-due subscription already out of grace: said now, so the grace job does not say it again.
            if !verdict(after), after.status == .pastDue {
                _ = try await transaction.subscriptions.markGraceNotified(pastDueSince: now, now: now)
            }
        }
    }

    func paymentFailed(_ transaction: TenantTransaction, _ data: [String: JSONValue]) async throws {
        try await emit(transaction, "payment.failed", data)
    }
}
