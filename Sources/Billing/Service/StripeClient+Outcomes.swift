import BillingCore
import BillingStore
import StripeAPI

/// Stripe calls whose refusal can mean the work is done already (an ending, an expiry, a release that Stripe or the
/// customer got to first): each reads the object back and says what it is, with typed throws so that callers match
/// on `StripeError` directly.
extension StripeClient {
    /// Releases a schedule; one no longer in force at Stripe (released or ended there) is let be.
    func releaseScheduleInForce(_ scheduleID: String) async throws(StripeError) {
        do {
            _ = try await releaseSubscriptionSchedule(scheduleID, idempotencyKey: "release:\(scheduleID)")
        } catch .refused(let refusal) {
            let schedule = try await retrieveSubscriptionSchedule(scheduleID)
            guard refusal.httpStatus == 400, !schedule.isInForce else { throw StripeError.refused(refusal) }
        }
    }

    /// Cancels now; a subscription Stripe has already ended (a retry, or a webhook not here yet) is read instead.
    func endSubscription(_ subscriptionID: String) async throws -> Subscription {
        do {
            return try await cancelSubscription(subscriptionID)
        } catch .refused(let refusal) {
            let current = try await retrieveSubscription(subscriptionID)
            guard SubscriptionStatus.isTerminal(current.status) else { throw StripeError.refused(refusal) }
            return current
        }
    }

    /// Expires a Checkout Session so that it can no longer be paid: true once it is expired (now, or already); false
    /// when Stripe refused because it was completed meanwhile. Any other refusal, or no answer, is thrown.
    func expireUnlessCompleted(_ sessionID: String) async throws(StripeError) -> Bool {
        do {
            _ = try await expireCheckoutSession(sessionID, idempotencyKey: "expire:\(sessionID)")
            return true
        } catch .refused(let refusal) {
            let session = try await retrieveCheckoutSession(sessionID)
            if session.status == "expired" { return true }
            if session.status == "complete" { return false }
            throw StripeError.refused(refusal)
        }
    }
}
