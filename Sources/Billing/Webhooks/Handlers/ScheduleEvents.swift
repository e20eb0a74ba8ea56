import BillingCore
import BillingStore
import Foundation
import StripeAPI

extension StripeEventProcessor {
    /// `subscription_schedule.*`: a schedule (the portal makes one for a downgrade at the period's end) governs its
    /// subscription. Its next phase shows as the pending change (`source: schedule`), and an ending by the schedule as
    /// the subscription's `cancelAt`; once released, canceled or completed it governs nothing. The schedule is read
    /// from Stripe when a client is configured, so an event arriving late never brings back an older state.
    func scheduleChanged(_ object: SubscriptionSchedule, _ context: EventContext) async throws -> EventDisposition {
        let schedule = try await current(object, id: object.id) { try await $0.retrieveSubscriptionSchedule($1) }
        guard let subscriptionID = schedule.subscription?.id ?? schedule.releasedSubscription else {
            return context.processed("\(schedule.id) governs no subscription")
        }
        let transaction = context.transaction
        guard var record = try await transaction.subscriptions.lock(subscriptionID) else {
            throw RetryLater("subscription \(subscriptionID) of \(schedule.id) is not recorded yet")
        }
        let before = record
        let pending = try await transaction.subscriptions.pendingChange()
        if schedule.isInForce {
            record.scheduleID = schedule.id
            // Stripe's current phase says where the schedule is (by its clock); without it, as of the event.
            let next = schedule.nextPhase(after: Int(context.created.timeIntervalSince1970))
            if let next, let price = next.items.first?.price.id, let (plan, interval) = try? catalog.plan(forStripePrice: price) {
                try await transaction.subscriptions.setPendingChange(
                    subscriptionID, plan: plan.key, interval: interval.rawValue,
                    effectiveAt: Date(timeIntervalSince1970: Double(next.startDate)), source: .schedule, now: now())
            } else if pending?.source == .schedule {
                try await transaction.subscriptions.setPendingChange(subscriptionID, plan: nil, interval: nil, now: now())
            }
            if schedule.endBehavior == "cancel", let last = schedule.phases.map(\.endDate).max() {
                record.cancelAt = Date(timeIntervalSince1970: Double(last))
            }
        } else {
            if record.scheduleID == schedule.id { record.scheduleID = nil }
            if pending?.source == .schedule {
                try await transaction.subscriptions.setPendingChange(subscriptionID, plan: nil, interval: nil, now: now())
            }
        }
        if record != before {
            try await transaction.subscriptions.update(record, now: now())
        }
        try await context.audit("subscription.schedule_\(schedule.status)", before: Self.auditFields(before),
                                after: Self.auditFields(record).merging(["schedule": schedule.id]) { $1 })
        return context.processed()
    }
}
