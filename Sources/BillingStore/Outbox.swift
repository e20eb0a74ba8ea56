import Foundation
import Logging
import PostgresNIO

/// An event to the SaaS product, claimed for delivery.
public struct OutboxMessage: Sendable, Equatable {
    public var tenant: UUID
    public var id: UUID
    public var type: String
    /// The JSON body to send, as written.
    public var payload: String
    public var attempts: Int
}

extension TenantTransaction {
    /// Writes an event for the SaaS product in this transaction: it exists exactly when the change it reports does.
    public func emit(id: UUID, type: String, payload: String, at time: Date) async throws {
        try await connection.query("""
            INSERT INTO billing.outbox_events (tenant_id, event_id, type, payload, created_at, next_attempt_at)
            VALUES (\(tenant), \(id), \(type), \(payload), \(time), \(time))
            """, logger: logger)
    }
}

/// The outbox, reached for delivery only through its SQL functions.
public struct Outbox: Sendable {
    public let database: BillingDatabase

    public init(database: BillingDatabase) {
        self.database = database
    }

    public enum Delivery: Sendable, Equatable {
        case delivered
        case failed(String)
    }

    /// Claims the oldest due event and hands it to `send` while holding it (so two deliverers never send one event at
    /// once), then records the outcome. Nil when none is due.
    public func deliverNext(
        retry: InboxRetryPolicy, _ send: @Sendable (OutboxMessage) async -> Delivery
    ) async throws(StoreError) -> (OutboxMessage, Delivery)? {
        let logger = database.logger
        do {
            return try await database.client.withTransaction(logger: logger) { connection -> (OutboxMessage, Delivery)? in
                let rows = try await connection.query("SELECT * FROM billing.claim_outbox_event()", logger: logger)
                var claimed: OutboxMessage?
                for try await (tenant, id, type, payload, attempts) in rows.decode((UUID, UUID, String, String, Int).self) {
                    claimed = OutboxMessage(tenant: tenant, id: id, type: type, payload: payload, attempts: attempts)
                }
                guard let message = claimed else { return nil }
                let delivery = await send(message)
                let tries = message.attempts + 1
                let error: String? = if case .failed(let reason) = delivery { reason } else { nil }
                let park = error != nil && tries >= retry.maxAttempts
                try await connection.query("""
                    SELECT billing.finish_outbox_event(\(message.tenant), \(message.id), \(error == nil), \(error),
                        \(retry.delayMilliseconds(after: tries)), \(park))
                    """, logger: logger)
                return (message, delivery)
            }
        } catch {
            throw StoreError.wrap(error, operation: "deliver outbox event")
        }
    }
}
