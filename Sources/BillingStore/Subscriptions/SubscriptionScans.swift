import Foundation
import Logging
import PostgresNIO

/// Subscriptions across tenants: plan changes due, grace periods ended, subscriptions to read again from Stripe.
public struct SubscriptionScans: Sendable {
    public let database: BillingDatabase

    public init(database: BillingDatabase) {
        self.database = database
    }

    /// Tenants whose pending plan change takes effect by `by` (ids only).
    public func planChangesDue(by: Date, limit: Int) async throws(StoreError) -> [UUID] {
        try await database.tenantIDs("SELECT * FROM billing.pending_plan_changes_due(\(by), \(limit)::int)", operation: "plan changes due")
    }

    /// Tenants whose past-due grace ended (past due since before `since`) and was not announced yet (ids only).
    public func gracePeriodsEnded(since: Date, limit: Int) async throws(StoreError) -> [UUID] {
        try await database.tenantIDs("SELECT * FROM billing.grace_periods_ended(\(since), \(limit)::int)", operation: "grace periods ended")
    }

    /// Live current subscriptions no event has touched since `before`, across tenants (ids only).
    public func subscriptionsToRefresh(before: Date, limit: Int) async throws(StoreError) -> [(tenant: UUID, subscription: String)] {
        try await database.tenantSubscriptions("SELECT * FROM billing.subscriptions_to_refresh(\(before), \(limit)::int)", operation: "subscriptions to refresh")
    }

    /// Stripe subscriptions still live although their tenant was deleted (they came alive while it was deleted).
    public func liveSubscriptionsOfDeletedTenants(limit: Int) async throws(StoreError) -> [(tenant: UUID, subscription: String)] {
        try await database.tenantSubscriptions(
            "SELECT * FROM billing.live_subscriptions_of_deleted_tenants(\(limit)::int)", operation: "live subscriptions of deleted tenants")
    }
}
