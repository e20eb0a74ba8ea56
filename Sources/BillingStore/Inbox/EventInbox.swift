import Foundation
import Logging
import PostgresNIO
import Synchronization

/// The inbox of Stripe events (a platform table), reached only through its SQL functions.
public struct EventInbox: Sendable {
    public let database: BillingDatabase

    public init(database: BillingDatabase) {
        self.database = database
    }

    /// Stores a verified event by its id, durably, before Stripe is answered. False for a repeat delivery.
    /// `ignoredBecause` keeps the event, visibly, without processing it (a livemode mismatch).
    public func store(
        id: String, type: String, created: Date, livemode: Bool, payload: String, ignoredBecause: String?
    ) async throws(StoreError) -> Bool {
        do {
            let payload = Self.storable(payload)
            // No text column holds a NUL: the type and the reason (which may quote the body) keep U+FFFD instead.
            let (type, ignoredBecause) = (Self.storableText(type), ignoredBecause.map(Self.storableText))
            let rows = try await database.client.query(
                "SELECT billing.store_stripe_event(\(id), \(type), \(created), \(livemode), \(payload)::jsonb, \(ignoredBecause))",
                logger: database.logger)
            for try await stored in rows.decode(Bool.self) { return stored }
            return false
        } catch {
            throw StoreError.wrap(error, operation: "store event")
        }
    }
}

/// An event the worker holds: locked in its transaction, so no other worker sees it until that transaction ends.
public struct ClaimedEvent: Sendable, Equatable {
    public var id: String
    public var type: String
    public var created: Date
    public var livemode: Bool
    /// Tries before this one (unresolved ones included).
    public var attempts: Int
    /// Failed tries before this one: what backoff and parking count.
    public var failures: Int
    /// `pending`, or `unresolved` when an earlier try found no tenant.
    public var status: String
    public var payload: String
}

/// How handling an event ended. Its effects (if any) commit with this.
public enum EventDisposition: Sendable, Equatable {
    /// Applied (or already applied: the effect was there) for the tenant.
    case processed(tenant: UUID, note: String?)
    /// Nothing to do for this type or object; kept for the record.
    case ignored(tenant: UUID?, note: String)
    /// Older than what was already applied: recorded, changes nothing.
    case stale(tenant: UUID, note: String)
    /// No tenant yet: kept and tried again, at once when one of `waitingFor` (the ids whose link to a tenant could
    /// resolve it: tenant, customer, subscription, PaymentIntent, charge) is linked.
    case unresolved(note: String, waitingFor: [String])
    /// Can never succeed as it is (an unknown price id, say): parked as failed at once, with its effects undone,
    /// for an operator to fix and replay.
    case rejected(tenant: UUID?, reason: String)
}

/// Backoff for failed and unresolved events: `initial`, doubling, at most `maximum`; a failing event is parked as
/// `failed` on its `maxAttempts`-th failure (tries spent unresolved do not count). An event still unresolved
/// `parkUnresolvedAfter` after it was received is `parked` (nil: never).
public struct InboxRetryPolicy: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var maxAttempts: Int
    public var parkUnresolvedAfter: Duration?

    public init(
        initial: Duration = .seconds(1), maximum: Duration = .seconds(3600), maxAttempts: Int = 15,
        parkUnresolvedAfter: Duration? = .seconds(7 * 86_400)
    ) {
        self.initial = initial
        self.maximum = maximum
        self.maxAttempts = max(1, maxAttempts)
        self.parkUnresolvedAfter = parkUnresolvedAfter
    }

    /// The wait after the `attempt`-th try (1-based), in milliseconds.
    public func delayMilliseconds(after attempt: Int) -> Int64 {
        let initial = Self.milliseconds(initial), maximum = Self.milliseconds(maximum)
        let doublings = min(max(attempt - 1, 0), 40)
        let (delay, overflow) = initial.multipliedReportingOverflow(by: Int64(1) << doublings)
        return overflow ? maximum : min(delay, maximum)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}

/// What one pass of the worker did with one event.
public enum ProcessOutcome: Sendable, Equatable {
    case finished(ClaimedEvent, EventDisposition)
    /// The handler threw: the effects were undone and the event is due again later, or parked.
    case failed(ClaimedEvent, error: String, parked: Bool)
    /// Still unresolved long after it was received: kept as `parked`, skipped by claims until what it waits for is
    /// linked or an operator replays it.
    case parked(ClaimedEvent, note: String)
}

/// A row of `billingd events list`.
public struct InboxEntry: Sendable, Equatable, Encodable {
    public var id: String
    public var type: String
    public var created: Date
    public var status: String
    public var attempts: Int
    public var failures: Int?
    public var lastError: String?
    public var tenantID: UUID?
    public var receivedAt: Date
    public var processedAt: Date?
    public var nextAttemptAt: Date?
    public var payload: String?
}

public struct InboxStats: Sendable, Equatable {
    /// Events by status.
    public var counts: [String: Int]
    /// When the oldest event still waiting (pending or unresolved) was received; nil when none waits.
    public var oldestWaitingSince: Date?
}

extension EventInbox {
    /// Claims the oldest due event, hands it to `handle` inside its transaction, and records the outcome there; a
    /// crash before the commit leaves the event due, with none of its effects. Nil when no event is due (by `dueBy`,
    /// when given: a pass that stops at what was due when it started).
    public func processNext(
        retry: InboxRetryPolicy, dueBy: Date? = nil, _ handle: @Sendable (ClaimedEvent, EventScope) async throws -> EventDisposition
    ) async throws(StoreError) -> ProcessOutcome? {
        let logger = database.logger
        let wake = Mutex<Set<String>>.Box([])
        let outcome: ProcessOutcome?
        do {
            outcome = try await database.client.withTransaction(logger: logger) { connection -> ProcessOutcome? in
                let rows = try await connection.query("SELECT * FROM billing.claim_stripe_event(\(dueBy))", logger: logger)
                var claimed: ClaimedEvent?
                for try await (id, type, created, livemode, attempts, failures, status, payload)
                    in rows.decode((String, String, Date, Bool, Int, Int, String, String).self)
                {
                    claimed = ClaimedEvent(
                        id: id, type: type, created: created, livemode: livemode, attempts: attempts, failures: failures,
                        status: status, payload: payload)
                }
                guard let event = claimed else { return nil }
                try await connection.query("SAVEPOINT handling", logger: logger)
                let disposition: EventDisposition
                do {
                    disposition = try await handle(event, EventScope(connection: connection, logger: logger, wake: wake))
                } catch {
                    // Shutting down: roll everything back; the event stays due, its try uncounted.
                    if Task.isCancelled { throw error }
                    // Undo the handler's effects (and its tenant scope); the event stays, due again or parked.
                    try await connection.query("ROLLBACK TO SAVEPOINT handling", logger: logger)
                    wake.value.withLock { $0 = [] }
                    let message = Self.describe(error)
                    let failures = event.failures + 1
                    let parked = failures >= retry.maxAttempts
                    try await finish(connection, event.id, status: parked ? "failed" : "pending", tenant: nil, note: message,
                                     retryMilliseconds: retry.delayMilliseconds(after: failures))
                    return .failed(event, error: message, parked: parked)
                }
                switch disposition {
                case .processed(let tenant, let note):
                    try await finish(connection, event.id, status: "processed", tenant: tenant, note: note, retryMilliseconds: 0)
                case .ignored(let tenant, let note):
                    try await finish(connection, event.id, status: "ignored", tenant: tenant, note: note, retryMilliseconds: 0)
                case .stale(let tenant, let note):
                    try await finish(connection, event.id, status: "stale", tenant: tenant, note: note, retryMilliseconds: 0)
                case .unresolved(let note, let waitingFor):
                    let status = try await finish(
                        connection, event.id, status: "unresolved", tenant: nil, note: note,
                        retryMilliseconds: retry.delayMilliseconds(after: event.attempts - event.failures + 1),
                        waitingFor: waitingFor, parkAfterMilliseconds: retry.parkUnresolvedAfter.map(InboxRetryPolicy.milliseconds))
                    if status == "parked" { return .parked(event, note: note) }
                case .rejected(let tenant, let reason):
                    try await connection.query("ROLLBACK TO SAVEPOINT handling", logger: logger)
                    wake.value.withLock { $0 = [] }
                    try await finish(connection, event.id, status: "failed", tenant: tenant, note: reason, retryMilliseconds: 0)
                }
                return .finished(event, disposition)
            }
        } catch {
            throw StoreError.wrap(error, operation: "process event")
        }
        await wakeUnresolved(linked: wake.value.withLock { Array($0) })
        return outcome
    }

    /// Makes due the unresolved events waiting for one of these ids, now linked to a tenant (by an event, or by a
    /// tenant's provisioning). A failure is logged, not thrown: those events are retried on their own backoff.
    public func wakeUnresolved(linked: [String]) async {
        guard !linked.isEmpty else { return }
        do {
            try await database.client.query("SELECT billing.wake_unresolved_stripe_events(\(linked))", logger: database.logger)
        } catch {
            database.logger.warning("could not wake unresolved events", metadata: ["error": "\(StoreError.wrap(error, operation: "wake"))"])
        }
    }

    /// Returns the status the event was given: `status`, or `parked` for an unresolved event received more than
    /// `parkAfterMilliseconds` ago.
    @discardableResult
    func finish(
        _ connection: PostgresConnection, _ id: String, status: String, tenant: UUID?, note: String?, retryMilliseconds: Int64,
        waitingFor: [String]? = nil, parkAfterMilliseconds: Int64? = nil
    ) async throws -> String {
        try await connection.first(
            """
            SELECT billing.finish_stripe_event(\(id), \(status), \(tenant), \(note), \(retryMilliseconds), \(waitingFor)::text[],
                                               \(parkAfterMilliseconds))
            """, as: String.self, logger: database.logger) ?? status
    }

    /// What an operator reads in `last_error`: the store's and Stripe's errors describe themselves without secrets;
    /// PostgreSQL's keep their message and SQLSTATE (PostgresNIO hides them from `description`).
    static func describe(_ error: any Error) -> String {
        let text = error is PSQLError || error is PostgresTransactionError
            ? StoreError.wrap(error, operation: "handling").description : String(describing: error)
        return text.count > 2000 ? String(text.prefix(2000)) + "..." : text
    }

    /// Newest first, optionally of one status.
    public func list(status: String?, limit: Int) async throws(StoreError) -> [InboxEntry] {
        do {
            var entries: [InboxEntry] = []
            let rows = try await database.client.query(
                "SELECT * FROM billing.list_stripe_events(\(status), \(limit)::int)", logger: database.logger)
            for try await (id, type, created, status, attempts, error, tenant, received, processed)
                in rows.decode((String, String, Date, String, Int, String?, UUID?, Date, Date?).self)
            {
                entries.append(InboxEntry(
                    id: id, type: type, created: created, status: status, attempts: attempts, lastError: error,
                    tenantID: tenant, receivedAt: received, processedAt: processed))
            }
            return entries
        } catch {
            throw StoreError.wrap(error, operation: "list events")
        }
    }

    /// One event with its payload; nil when the inbox has no such event.
    public func show(_ id: String) async throws(StoreError) -> InboxEntry? {
        do {
            let rows = try await database.client.query("SELECT * FROM billing.show_stripe_event(\(id))", logger: database.logger)
            for try await (id, type, created, status, attempts, failures, error, tenant, received, processed, next, payload)
                in rows.decode((String, String, Date, String, Int, Int, String?, UUID?, Date, Date?, Date, String).self)
            {
                return InboxEntry(
                    id: id, type: type, created: created, status: status, attempts: attempts, failures: failures, lastError: error,
                    tenantID: tenant, receivedAt: received, processedAt: processed, nextAttemptAt: next, payload: payload)
            }
            return nil
        } catch {
            throw StoreError.wrap(error, operation: "show event")
        }
    }

    /// Makes an event due now, attempts counted afresh. Returns its previous status; nil when there is no such event.
    public func retry(_ id: String) async throws(StoreError) -> String? {
        do {
            return try await database.client.query("SELECT billing.retry_stripe_event(\(id))", logger: database.logger)
                .decode(String?.self).first { _ in true } ?? nil
        } catch {
            throw StoreError.wrap(error, operation: "retry event")
        }
    }

    public func stats() async throws(StoreError) -> InboxStats {
        do {
            var stats = InboxStats(counts: [:], oldestWaitingSince: nil)
            let rows = try await database.client.query("SELECT * FROM billing.stripe_inbox_stats()", logger: database.logger)
            for try await (status, count, oldest) in rows.decode((String, Int, Date?).self) {
                stats.counts[status] = count
                if status == "pending" || status == "unresolved", let oldest {
                    stats.oldestWaitingSince = min(stats.oldestWaitingSince ?? oldest, oldest)
                }
            }
            return stats
        } catch {
            throw StoreError.wrap(error, operation: "inbox stats")
        }
    }

    /// The database's clock (a pass that stops at what was due when it started must not mix two clocks).
    public func databaseNow() async throws(StoreError) -> Date {
        let now: Date?
        do {
            now = try await database.client.query("SELECT clock_timestamp()", logger: database.logger).decode(Date.self).first { _ in true }
        } catch {
            throw StoreError.wrap(error, operation: "clock")
        }
        guard let now else { throw StoreError.database(operation: "clock", message: "SELECT clock_timestamp() returned no row", sqlState: nil) }
        return now
    }

    /// The creation time of the newest event Stripe sent (reconciliation's own events left out); nil when none.
    public func newestCreated() async throws(StoreError) -> Date? {
        do {
            return try await database.client.query("SELECT billing.newest_stripe_event_created()", logger: database.logger)
                .decode(Date?.self).first { _ in true } ?? nil
        } catch {
            throw StoreError.wrap(error, operation: "newest event")
        }
    }
}

extension Mutex where Value: Sendable {
    /// A mutex to share between the closures of one call.
    final class Box: Sendable {
        let value: Mutex<Value>
        init(_ initial: Value) { value = Mutex(initial) }
    }
}
