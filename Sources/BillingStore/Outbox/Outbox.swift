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
    /// Attempts so far, this one included.
    public var attempts: Int
    /// The lease's token: finishing the event takes it.
    public var claim: UUID
}

/// An outbox event as operators see it.
public struct OutboxEntry: Sendable, Equatable {
    public var id: UUID
    public var tenantID: UUID
    public var type: String
    /// pending, delivered or failed (parked after the last attempt).
    public var status: String
    public var attempts: Int
    public var lastError: String?
    public var createdAt: Date
    public var nextAttemptAt: Date
    public var deliveredAt: Date?
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

    /// Claims the oldest due event with a lease of `lease` (no other deliverer takes it meanwhile), hands it to `send`
    /// with no transaction open, then records the outcome. Nil when none is due. A deliverer that dies while sending
    /// leaves the event due again when the lease runs out, so `lease` must outlast `send`.
    public func deliverNext(
        retry: InboxRetryPolicy, lease: Duration, _ send: @Sendable (OutboxMessage) async -> Delivery
    ) async throws(StoreError) -> (OutboxMessage, Delivery)? {
        let logger = database.logger
        let leaseMilliseconds = InboxRetryPolicy.milliseconds(lease)
        let message: OutboxMessage
        do {
            let rows = try await database.client.query(
                "SELECT * FROM billing.claim_outbox_event(\(leaseMilliseconds)::bigint, \(retry.maxAttempts)::int)", logger: logger)
            var claimed: OutboxMessage?
            for try await (tenant, id, type, payload, attempts, claim) in rows.decode((UUID, UUID, String, String, Int, UUID).self) {
                claimed = OutboxMessage(tenant: tenant, id: id, type: type, payload: payload, attempts: attempts, claim: claim)
            }
            guard let claimed else { return nil }
            message = claimed
        } catch {
            throw StoreError.wrap(error, operation: "claim outbox event")
        }
        let delivery = await send(message)
        let tries = message.attempts
        let error: String? = if case .failed(let reason) = delivery { reason } else { nil }
        let park = error != nil && tries >= retry.maxAttempts
        do {
            let counted = try await database.client.query("""
                SELECT billing.finish_outbox_event(\(message.tenant), \(message.id), \(message.claim), \(error == nil), \(error),
                    \(retry.delayMilliseconds(after: tries)), \(park))
                """, logger: logger).decode(Bool.self).first { _ in true } ?? false
            if !counted {
                logger.notice("outbox event was taken over after its lease ran out; this attempt is not counted",
                              metadata: ["event": "\(message.id)"])
            }
        } catch {
            // The lease runs out and the event is sent again: at least once, never lost.
            throw StoreError.wrap(error, operation: "finish outbox event")
        }
        return (message, delivery)
    }

    // MARK: For operators

    /// Events newest first, optionally of one status.
    public func list(status: String?, limit: Int) async throws(StoreError) -> [OutboxEntry] {
        do {
            var entries: [OutboxEntry] = []
            let rows = try await database.client.query(
                "SELECT * FROM billing.list_outbox_events(\(status), \(limit)::int)", logger: database.logger)
            for try await (id, tenant, type, status, attempts, error, created, next, delivered)
                in rows.decode((UUID, UUID, String, String, Int, String?, Date, Date, Date?).self)
            {
                entries.append(OutboxEntry(
                    id: id, tenantID: tenant, type: type, status: status, attempts: attempts, lastError: error, createdAt: created,
                    nextAttemptAt: next, deliveredAt: delivered))
            }
            return entries
        } catch {
            throw StoreError.wrap(error, operation: "list outbox events")
        }
    }

    /// Makes one event (`id`), or every parked one (`id` nil), due now with attempts counted afresh. Returns each
    /// event made due with the status it had.
    public func retry(_ id: UUID?) async throws(StoreError) -> [(id: UUID, previousStatus: String)] {
        do {
            var retried: [(id: UUID, previousStatus: String)] = []
            let rows = try await database.client.query("SELECT * FROM billing.retry_outbox_events(\(id))", logger: database.logger)
            for try await (id, previous) in rows.decode((UUID, String).self) { retried.append((id, previous)) }
            return retried
        } catch {
            throw StoreError.wrap(error, operation: "retry outbox events")
        }
    }

    /// Events by status, and when the oldest one not yet delivered was written.
    public func stats() async throws(StoreError) -> (counts: [String: Int], oldestPendingSince: Date?) {
        do {
            var counts: [String: Int] = [:]
            var oldest: Date?
            let rows = try await database.client.query("SELECT * FROM billing.outbox_stats()", logger: database.logger)
            for try await (status, count, created) in rows.decode((String, Int, Date?).self) {
                counts[status] = count
                if status == "pending" { oldest = created }
            }
            return (counts, oldest)
        } catch {
            throw StoreError.wrap(error, operation: "outbox stats")
        }
    }
}
