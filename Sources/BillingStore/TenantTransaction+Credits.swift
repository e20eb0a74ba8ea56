import Foundation
import Logging
import PostgresNIO

/// What `apply_credit_entry` did with one keyed credit movement.
public struct CreditEntryResult: Sendable, Equatable {
    public enum Outcome: String, Sendable { case applied, replayed, insufficient }
    public var outcome: Outcome
    /// The entry made now or by the first call with this key; nil when refused.
    public var entryID: Int?
    public var kind: String
    public var amount: Int
    public var balanceAfter: Int?
    public var reason: String?
    public var createdAt: Date?
    /// The balances now.
    public var available: Int
    public var frozen: Int
}

/// One line of the credit ledger.
public struct LedgerEntry: Sendable, Equatable {
    public var id: Int
    public var kind: String
    public var amount: Int
    public var frozenDelta: Int
    public var balanceAfter: Int
    public var reason: String?
    public var source: String
    public var stripeEventID: String?
    public var createdAt: Date
}

extension TenantTransaction {
    /// Whether the tenant exists and is not deleted (or, `includingDeleted`, exists at all: operators still read a
    /// deleted tenant's data until it is purged). No lock: the balance row serializes credit movements.
    public func tenantIsLive(includingDeleted: Bool = false) async throws -> Bool {
        try await connection.first(
            "SELECT count(*)::int FROM billing.tenants WHERE id = \(tenant) AND (deleted_at IS NULL OR \(includingDeleted))",
            as: Int.self, logger: logger) == 1
    }

    /// Whether the tenant is live, holding its row until the transaction ends (`FOR KEY SHARE`: other holders and
    /// updates of its columns go on). A deletion under way (which locks the row) is waited for and then seen; one
    /// that starts later waits for this transaction and then sees what it wrote. So a subscription event and
    /// `tenants.delete` cannot pass each other unseen.
    public func holdTenantIfLive() async throws -> Bool {
        try await connection.first(
            "SELECT deleted_at IS NULL FROM billing.tenants WHERE id = \(tenant) FOR KEY SHARE", as: Bool.self, logger: logger) ?? false
    }

    /// A credit movement named by `source`, once: a repeat returns the first entry. With `requireBalance`, a movement
    /// that would take the available balance below zero is refused and changes nothing.
    public func applyCredits(source: String, kind: String, amount: Int, reason: String?, requireBalance: Bool) async throws -> CreditEntryResult {
        let rows = try await connection.query("""
            SELECT * FROM billing.apply_credit_entry(\(tenant), \(source), \(kind), \(Int64(amount)), \(reason), \(requireBalance))
            """, logger: logger)
        for try await (outcome, entry, kind, amount, after, reason, created, available, frozen)
            in rows.decode((String, Int?, String, Int, Int?, String?, Date?, Int, Int).self)
        {
            return CreditEntryResult(
                outcome: CreditEntryResult.Outcome(rawValue: outcome) ?? .insufficient, entryID: entry, kind: kind, amount: amount,
                balanceAfter: after, reason: reason, createdAt: created, available: available, frozen: frozen)
        }
        throw StoreError.database(operation: "apply credits", message: "apply_credit_entry returned no row", sqlState: nil)
    }

    /// Ledger entries newest first, older than `before` (an entry id) when given. Entries of one tenant get their ids
    /// in commit order (the balance row is locked first), so paging by id neither skips nor repeats while new ones arrive.
    public func ledger(before: Int?, limit: Int) async throws -> [LedgerEntry] {
        let rows = try await connection.query("""
            SELECT entry_id, kind, amount, frozen_delta, balance_after, reason, source, stripe_event_id, created_at
            FROM billing.credit_ledger
            WHERE tenant_id = \(tenant) AND (\(before)::bigint IS NULL OR entry_id < \(before)::bigint)
            ORDER BY entry_id DESC
            LIMIT \(limit)
            """, logger: logger)
        var entries: [LedgerEntry] = []
        for try await (id, kind, amount, frozen, after, reason, source, event, created)
            in rows.decode((Int, String, Int, Int, Int, String?, String, String?, Date).self)
        {
            entries.append(LedgerEntry(
                id: id, kind: kind, amount: amount, frozenDelta: frozen, balanceAfter: after, reason: reason, source: source,
                stripeEventID: event, createdAt: created))
        }
        return entries
    }
}
