import BillingCore
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

/// The tenant's credit ledger and its balance.
public struct CreditStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// The tenant's credit ledger and its balance.
    public var credits: CreditStore { CreditStore(transaction: self) }
}

extension CreditStore {
    /// A credit movement named by `source`, once: a repeat returns the first entry. With `requireBalance`, a movement
    /// that would take the available balance below zero is refused and changes nothing.
    public func apply(source: String, kind: String, amount: Int, reason: String?, requireBalance: Bool) async throws -> CreditEntryResult {
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

    /// Appends a ledger entry and moves the balances (available by `amount`, frozen by `frozenDelta`) once per
    /// `source`. Returns the new available balance, or nil when that source was applied before.
    public func append(
        source: String, kind: String, amount: Int, frozenDelta: Int = 0, reason: String?, stripeEvent: String?
    ) async throws -> Int? {
        try await connection.first("""
            SELECT billing.append_credit_entry(\(tenant), \(source), \(kind), \(Int64(amount)), \(Int64(frozenDelta)), \(reason), \(stripeEvent))
            """, as: Int?.self, logger: logger) ?? nil
    }

    public func balance() async throws -> (available: Int, frozen: Int) {
        let rows = try await connection.query(
            "SELECT available, frozen FROM billing.credit_balances WHERE tenant_id = \(tenant)", logger: logger)
        for try await (available, frozen) in rows.decode((Int, Int).self) { return (available, frozen) }
        return (0, 0)
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
