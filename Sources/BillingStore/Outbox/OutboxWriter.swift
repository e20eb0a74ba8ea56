import BillingCore
import Foundation
import Logging
import PostgresNIO

/// Events for the SaaS product, written in the transaction of the change they report.
public struct OutboxWriter: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// Events for the SaaS product, written in the transaction of the change they report.
    public var outbox: OutboxWriter { OutboxWriter(transaction: self) }
}

extension OutboxWriter {
    /// Writes an event for the SaaS product in this transaction: it exists exactly when the change it reports does.
    public func emit(id: UUID, type: String, payload: String, at time: Date) async throws {
        try await connection.query("""
            INSERT INTO billing.outbox_events (tenant_id, event_id, type, payload, created_at, next_attempt_at)
            VALUES (\(tenant), \(id), \(type), \(payload), \(time), \(time))
            """, logger: logger)
    }
}
