import BillingStore
import Foundation

/// Per-tenant limits on the methods that call Stripe, as token buckets in PostgreSQL (so every server process shares
/// them): one admin (or one operator) with a batch of calls cannot spend the whole Stripe account's rate limit.
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
    /// `billing.checkout`, `billing.topUp`, `billing.setupPaymentMethod`: Checkout Sessions opened (a repeat that gets
    /// an open session back takes none).
    public var sessions: Limit
    /// `billing.refund`.
    public var refunds: Limit
    /// `billing.voidInvoice`, `billing.retryInvoice`.
    public var invoiceActions: Limit

    public init(
        changesPerMinute: Int = 10, portalPerMinute: Int = 10, sessionsPerMinute: Int = 10, refundsPerMinute: Int = 10,
        invoiceActionsPerMinute: Int = 10
    ) {
        changes = Limit(name: "subscription_changes", perMinute: changesPerMinute)
        portal = Limit(name: "portal", perMinute: portalPerMinute)
        sessions = Limit(name: "checkout_sessions", perMinute: sessionsPerMinute)
        refunds = Limit(name: "refunds", perMinute: refundsPerMinute)
        invoiceActions = Limit(name: "invoice_actions", perMinute: invoiceActionsPerMinute)
    }
}

extension BillingService {
    /// Takes a token of `limit` for the tenant in a short transaction of its own, before any lock or Stripe call; an
    /// empty bucket is TOO_MANY_REQUESTS with `retryAfter` (seconds).
    func spendRateToken(_ limit: RateLimits.Limit, tenant: UUID, method: String) async throws {
        let now = now()
        let wait = try await tenants.database.transaction(tenant, operation: "rate limit") { transaction in
            // A tenant never provisioned has no bucket to keep (and none may refer to it).
            guard try await transaction.tenantRow.isLive(includingDeleted: true) else { throw Self.unknownTenant(tenant) }
            return try await transaction.tenantRow.takeRateToken(limit.name, perMinute: limit.perMinute, burst: limit.burst, now: now)
        }
        if let wait { throw Self.rateLimited(limit, method: method, wait: wait) }
    }
}
