import BillingCore
import Foundation
import Logging
import PostgresNIO

/// What a method that calls Stripe is about to do, recorded before the call (migration 0020): the first of its
/// atomic phases.
public struct StripeIntent: Sendable, Equatable {
    public var id: UUID
    public var subject: String
    public var operation: String
    /// What makes a repeat the same request (a double click): compared, never parsed.
    public var request: String
    /// The operation's own record of what to send (JSON), so that a repeat sends the very same request.
    public var plan: String
    public var status: String
    public var createdAt: Date

    /// The idempotency key of the intent's Stripe call named `step`: the same on every repeat of this intent.
    public func key(_ step: String) -> String {
        "\(operation):\(id.uuidString.lowercased()):\(step)"
    }
}

/// Calls to Stripe in flight (atomic phases): started, then finished.
public struct IntentStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// Calls to Stripe in flight (atomic phases): started, then finished.
    public var intents: IntentStore { IntentStore(transaction: self) }
}

extension IntentStore {
    /// The intents started and not finished for `subject`: for `request`, or any request when nil.
    public func started(subject: String, request: String?) async throws -> [StripeIntent] {
        let rows = try await connection.query("""
            SELECT id, subject, operation, request, plan::text, status, created_at FROM billing.stripe_intents
            WHERE tenant_id = \(tenant) AND subject = \(subject) AND status = 'started' AND (\(request)::text IS NULL OR request = \(request))
            ORDER BY created_at
            """, logger: logger)
        var intents: [StripeIntent] = []
        for try await (id, subject, operation, request, plan, status, created) in rows.decode((UUID, String, String, String, String, String, Date).self) {
            intents.append(StripeIntent(
                id: id, subject: subject, operation: operation, request: request, plan: plan, status: status, createdAt: created))
        }
        return intents
    }

    /// Records an intent as `started`. `exclusive`: no other intent may be started for its subject meanwhile.
    public func start(
        id: UUID, subject: String, operation: String, request: String, exclusive: Bool, plan: String, now: Date
    ) async throws -> StripeIntent {
        try await connection.query("""
            INSERT INTO billing.stripe_intents (tenant_id, id, subject, operation, request, exclusive, plan, created_at)
            VALUES (\(tenant), \(id), \(subject), \(operation), \(request), \(exclusive), \(plan)::jsonb, \(now))
            """, logger: logger)
        return StripeIntent(id: id, subject: subject, operation: operation, request: request, plan: plan, status: "started", createdAt: now)
    }

    /// The intent as stored now, locked until this transaction ends (the outcome's phase reads it first: another
    /// repeat may have recorded the outcome meanwhile).
    public func lock(_ id: UUID) async throws -> String? {
        try await connection.first(
            "SELECT status FROM billing.stripe_intents WHERE tenant_id = \(tenant) AND id = \(id) FOR UPDATE", as: String.self, logger: logger)
    }

    /// Ends an intent: `succeeded`, `failed` (Stripe refused it) or `abandoned` (settled some other way).
    public func finish(_ id: UUID, status: String, outcome: String?, now: Date) async throws {
        try await connection.query("""
            UPDATE billing.stripe_intents SET status = \(status), outcome = \(outcome), finished_at = \(now)
            WHERE tenant_id = \(tenant) AND id = \(id) AND status = 'started'
            """, logger: logger)
    }
}
