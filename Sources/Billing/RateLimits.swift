import BillingStore
import Foundation

/// Per-tenant limits on the methods that call Stripe on every request, as token buckets in PostgreSQL (so every server
/// process shares them): one admin with a batch of calls cannot spend the whole Stripe account's rate limit. Checkout,
/// top-up and card setup keep their own limit (`BILLING_CHECKOUT_SESSIONS_PER_MINUTE`).
public struct RateLimits: Sendable, Equatable {
    /// One class of methods: so many calls a minute, and as many at once.
    public struct Limit: Sendable, Equatable {
        public var name: String
        public var perMinute: Int
        public var burst: Int

        public init(name: String, perMinute: Int, burst: Int? = nil) {
            self.name = name
            self.perMinute = max(1, perMinute)
            self.burst = max(1, burst ?? perMinute)
        }
    }

    /// `billing.updateSeats`, `billing.changePlan`, `billing.cancel`, `billing.resume`.
    public var changes: Limit
    /// `billing.portal`.
    public var portal: Limit

    public init(changesPerMinute: Int = 10, portalPerMinute: Int = 10) {
        changes = Limit(name: "subscription_changes", perMinute: changesPerMinute)
        portal = Limit(name: "portal", perMinute: portalPerMinute)
    }
}

extension BillingAPI {
    /// Takes a token of `limit` for the tenant in a short transaction of its own, before any lock or Stripe call; an
    /// empty bucket is TOO_MANY_REQUESTS with `retryAfter` (seconds).
    func spendRateToken(_ limit: RateLimits.Limit, tenant: UUID, method: String) async throws {
        let now = now()
        let wait = try await tenants.database.transaction(tenant, operation: "rate limit") { transaction in
            try await transaction.takeRateToken(limit.name, perMinute: limit.perMinute, burst: limit.burst, now: now)
        }
        if let wait {
            let seconds = max(1, Int((wait / .seconds(1)).rounded(.up)))
            throw BillingError.tooManyRequests(
                "\(method) is limited to \(limit.perMinute) calls a minute per tenant (with the others of its class); try again in \(seconds) s",
                retryAfter: wait)
        }
    }
}
