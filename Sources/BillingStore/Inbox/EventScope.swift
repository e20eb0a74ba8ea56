import Foundation
import Logging
import PostgresNIO
import Synchronization

/// The worker's view inside one claimed event's transaction: the resolver lookups (ids only), and the way into
/// the resolved tenant's scope.
public struct EventScope: Sendable {
    let connection: PostgresConnection
    let logger: Logger
    /// What this event linked to a tenant, to wake the events waiting for it once it has committed.
    let wake: Mutex<Set<String>>.Box

    /// What this server knows of an event's references, in one round trip: the tenant each of the subscription,
    /// customer and payments is linked to (when it is), and which of the tenant ids `named` (from metadata or a
    /// client reference) exist. Each reference is labelled by its kind (`subscription sub_…`, `customer cus_…`,
    /// `payment pi_…`, `metadata <tenant>`); references linked to nothing are left out.
    public func knownTenants(
        subscription: String?, customer: String?, payments: [String], named: [UUID]
    ) async throws -> [(reference: String, tenant: UUID)] {
        let rows = try await connection.query("""
            SELECT 'subscription ' || s, billing.tenant_for_stripe_subscription(s) FROM unnest(ARRAY[\(subscription)::text]) s
                WHERE s IS NOT NULL AND billing.tenant_for_stripe_subscription(s) IS NOT NULL
            UNION ALL
            SELECT 'customer ' || c, billing.tenant_for_stripe_customer(c) FROM unnest(ARRAY[\(customer)::text]) c
                WHERE c IS NOT NULL AND billing.tenant_for_stripe_customer(c) IS NOT NULL
            UNION ALL
            SELECT 'payment ' || p, billing.tenant_for_stripe_payment(p) FROM unnest(\(payments)::text[]) p
                WHERE billing.tenant_for_stripe_payment(p) IS NOT NULL
            UNION ALL
            SELECT 'metadata ' || t::text, t FROM unnest(\(named.map { $0.uuidString.lowercased() })::uuid[]) t
                WHERE billing.tenant_exists(t)
            """, logger: logger)
        var known: [(reference: String, tenant: UUID)] = []
        for try await (reference, tenant) in rows.decode((String, UUID).self) {
            known.append((reference, tenant))
        }
        return known
    }

    /// Scopes the rest of this transaction to `tenant` (row-level security fences every statement after this), and
    /// holds the tenant's row (`FOR KEY SHARE`, as the foreign keys of every row it writes would) before any other row:
    /// a deletion under way, which holds it `FOR UPDATE`, is waited for first instead of deadlocking with it halfway.
    public func enter(_ tenant: UUID) async throws -> TenantTransaction {
        try await connection.query(
            "SELECT set_config('app.tenant_id', \(tenant.uuidString.lowercased()), true)", logger: logger)
        try await connection.query("SELECT 1 FROM billing.tenants WHERE id = \(tenant) FOR KEY SHARE", logger: logger)
        return TenantTransaction(connection: connection, tenant: tenant, logger: logger)
    }

    /// This event links these ids (a customer, subscription or payment) to a tenant: the unresolved events waiting
    /// for one of them are made due once it has committed (waking them inside this transaction would make workers
    /// wait on each other).
    public func wakeUnresolved(_ links: [String?]) {
        wake.value.withLock { $0.formUnion(links.compactMap { $0 }) }
    }
}
