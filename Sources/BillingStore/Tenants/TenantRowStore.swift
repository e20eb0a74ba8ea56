import BillingCore
import Foundation
import Logging
import PostgresNIO

/// A tenant as operators see it (deleted ones included until purged).
public struct TenantListing: Sendable, Equatable {
    public var id: UUID
    public var name: String
    public var email: String
    public var stripeCustomerID: String?
    public var createdAt: Date
    public var deletedAt: Date?
}

/// The tenant's own row: its lock, its Stripe customer, its saved card, its rate limits, its deletion.
public struct TenantRowStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// The tenant's own row: its lock, its Stripe customer, its saved card, its rate limits, its deletion.
    public var tenantRow: TenantRowStore { TenantRowStore(transaction: self) }
}

extension TenantRowStore {
    /// The tenant, locked until the transaction ends; nil when it does not exist or was deleted. Every change to a
    /// tenant's rows starts here, so changes to one tenant never wait on each other in a cycle. `FOR NO KEY UPDATE`:
    /// rows that refer to the tenant (whose foreign keys take `FOR KEY SHARE`) are still written meanwhile.
    public func lock() async throws -> TenantRecord? {
        let rows = try await connection.query(
            "SELECT name, email, stripe_customer_id, created_at FROM billing.tenants WHERE id = \(tenant) AND deleted_at IS NULL FOR NO KEY UPDATE",
            logger: logger)
        for try await (name, email, customer, created) in rows.decode((String, String, String?, Date).self) {
            return TenantRecord(id: tenant, name: name, email: email, stripeCustomerID: customer, createdAt: created)
        }
        return nil
    }

    /// The tenant, deleted or not, locked; nil when it never existed. `exclusive` (its deletion): `FOR UPDATE`, which
    /// also waits for every transaction holding the row to check it is live (`holdIfLive`); otherwise as
    /// `lock`.
    public func lockIncludingDeleted(exclusive: Bool = false) async throws -> TenantListing? {
        let rows = try await connection.query("""
            SELECT id, name, email, stripe_customer_id, created_at, deleted_at FROM billing.tenants WHERE id = \(tenant)
            \(unescaped: exclusive ? "FOR UPDATE" : "FOR NO KEY UPDATE")
            """, logger: logger)
        for try await (id, name, email, customer, created, deleted) in rows.decode((UUID, String, String, String?, Date, Date?).self) {
            return TenantListing(id: id, name: name, email: email, stripeCustomerID: customer, createdAt: created, deletedAt: deleted)
        }
        return nil
    }

    /// Whether the tenant exists and is not deleted (or, `includingDeleted`, exists at all: operators still read a
    /// deleted tenant's data until it is purged). No lock: the balance row serializes credit movements.
    public func isLive(includingDeleted: Bool = false) async throws -> Bool {
        try await connection.first(
            "SELECT count(*)::int FROM billing.tenants WHERE id = \(tenant) AND (deleted_at IS NULL OR \(includingDeleted))",
            as: Int.self, logger: logger) == 1
    }

    /// Whether the tenant is live, holding its row until the transaction ends (`FOR KEY SHARE`: other holders and
    /// updates of its columns go on). A deletion under way (which locks the row) is waited for and then seen; one
    /// that starts later waits for this transaction and then sees what it wrote. So a subscription event and
    /// `tenants.delete` cannot pass each other unseen.
    public func holdIfLive() async throws -> Bool {
        try await connection.first(
            "SELECT deleted_at IS NULL FROM billing.tenants WHERE id = \(tenant) FOR KEY SHARE", as: Bool.self, logger: logger) ?? false
    }

    public func setStripeCustomer(_ customer: String) async throws {
        try await connection.query(
            "UPDATE billing.tenants SET stripe_customer_id = \(customer) WHERE id = \(tenant)", logger: logger)
    }

    /// Links the tenant to a Stripe customer when it has none (a Checkout that created the customer).
    public func linkCustomerIfUnset(_ customer: String) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.tenants SET stripe_customer_id = \(customer)
                       WHERE id = \(tenant) AND stripe_customer_id IS NULL RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) == 1
    }

    /// `customer.deleted`: the tenant no longer has this customer. True when it had it.
    public func unlinkCustomer(_ customer: String) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.tenants SET stripe_customer_id = NULL
                       WHERE id = \(tenant) AND stripe_customer_id = \(customer) RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) == 1
    }

    /// Saves the card future invoices charge (nil: none, it was removed), unless a change made later is recorded.
    /// True when saved.
    public func setDefaultPaymentMethod(_ paymentMethod: String?, savedAt time: Date) async throws -> Bool {
        try await connection.first("""
            WITH u AS (UPDATE billing.tenants SET default_payment_method = \(paymentMethod), default_payment_method_at = \(time)
                       WHERE id = \(tenant) AND (default_payment_method_at IS NULL OR default_payment_method_at <= \(time))
                       RETURNING 1)
            SELECT count(*)::int FROM u
            """, as: Int.self, logger: logger) == 1
    }

    /// The card future invoices charge, if one was saved.
    public func defaultPaymentMethod() async throws -> String? {
        try await connection.first(
            "SELECT default_payment_method FROM billing.tenants WHERE id = \(tenant)", as: String?.self, logger: logger) ?? nil
    }

    /// Takes a token from the tenant's bucket for `name` (migration 0017): nil when taken, else how long until one is.
    public func takeRateToken(_ name: String, perMinute: Int, burst: Int, now: Date) async throws -> Duration? {
        let wait = try await connection.first(
            "SELECT billing.take_rate_token(\(name), \(perMinute)::integer, \(burst)::integer, \(now))", as: Double.self, logger: logger) ?? 0
        return wait > 0 ? .milliseconds(Int((wait * 1000).rounded(.up))) : nil
    }

    /// Whether any of the tenant's subscriptions was ever trialing (migration 0016 marks it): one free trial each.
    public func trialUsed() async throws -> Bool {
        try await connection.first(
            "SELECT trial_used_at IS NOT NULL FROM billing.tenants WHERE id = \(tenant)", as: Bool.self, logger: logger) ?? false
    }

    public func markDeleted(at time: Date) async throws {
        try await connection.query(
            "UPDATE billing.tenants SET deleted_at = \(time) WHERE id = \(tenant) AND deleted_at IS NULL", logger: logger)
    }
}
