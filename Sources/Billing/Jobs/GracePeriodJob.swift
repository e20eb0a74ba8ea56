import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

extension GracePeriodJob {
    /// The grace job: announces (entitlement.changed) every past-due subscription whose grace period has run out,
    /// once; nothing in the row changes then, so no webhook would. Returns the tenants it announced.
    public func run(now: Date, logger: Logger) async throws -> [UUID] {
        guard notifier.enabled else { return [] }
        let scans = SubscriptionScans(database: environment.database)
        let since = now.addingTimeInterval(-Double(settings.pastDueGrace.components.seconds))
        var announced: [UUID] = []
        for tenant in try await scans.gracePeriodsEnded(since: since, limit: 500) {
            let done = try await tenants.database.transaction(tenant, operation: "announce grace end") { transaction -> Bool in
                guard let record = try await transaction.subscriptions.markGraceNotified(pastDueSince: since, now: now) else { return false }
                try await notifier.emit(transaction, "entitlement.changed", [
                    "entitled": false, "plan": .string(record.plan), "status": .string(record.status.rawValue),
                    "graceEndedAt": .string(record.pastDueSince.map { $0.addingTimeInterval(Double(settings.pastDueGrace.components.seconds)) }?.formatted(.iso8601) ?? ""),
                ], now: now)
                return true
            }
            if done { announced.append(tenant) }
        }
        return announced
    }
}
