import BillingStore
import Foundation
import Logging

/// Processes the inbox: woken by LISTEN/NOTIFY when an event is stored, polling as a fallback. Each pass claims one
/// due event with `FOR UPDATE SKIP LOCKED`, so any number of workers (in one process or many) share one inbox.
public struct InboxWorker: Sendable {
    public struct Settings: Sendable {
        /// Events processed at once by this worker.
        public var concurrency: Int
        public var pollInterval: Duration
        public var retry: InboxRetryPolicy
        /// How long one event's transaction may take before the loop gives up on it and goes on (see `abandoning`).
        public var eventTimeout: Duration

        public init(
            concurrency: Int = 2, pollInterval: Duration = .seconds(2), retry: InboxRetryPolicy = InboxRetryPolicy(),
            eventTimeout: Duration = .seconds(300)
        ) {
            self.concurrency = max(1, concurrency)
            self.pollInterval = pollInterval
            self.retry = retry
            self.eventTimeout = eventTimeout
        }
    }

    public let inbox: EventInbox
    public let processor: StripeEventProcessor
    public let settings: Settings
    /// A connection of its own for LISTEN; nil to rely on polling alone.
    public let listenURL: DatabaseURL?
    public let logger: Logger
    /// Told of every event processed (metrics).
    public let observe: @Sendable (ProcessOutcome) -> Void
    let doorbell = Doorbell()

    public static let channel = "billing_stripe_events"

    public init(
        inbox: EventInbox, processor: StripeEventProcessor, settings: Settings, listenURL: DatabaseURL?, logger: Logger,
        observe: @escaping @Sendable (ProcessOutcome) -> Void = { _ in }
    ) {
        self.inbox = inbox
        self.processor = processor
        self.settings = settings
        self.listenURL = listenURL
        self.logger = logger
        self.observe = observe
    }

    /// Runs until the task is cancelled.
    public func run() async {
        logger.info("inbox worker started", metadata: [
            "concurrency": "\(settings.concurrency)", "poll": "\(settings.pollInterval)", "listen": "\(listenURL != nil)",
        ])
        await withTaskGroup(of: Void.self) { group in
            if let listenURL {
                group.addTask { await listen(listenURL) }
            }
            for _ in 0..<settings.concurrency {
                group.addTask { await loop() }
            }
        }
        logger.info("inbox worker stopped")
    }

    /// Processes every event due when it starts (each at most once, so an event that stays due ends the pass
    /// rather than spinning), then returns what happened (for `billingd worker --once` and tests).
    @discardableResult
    public func drain() async throws(StoreError) -> [ProcessOutcome] {
        var outcomes: [ProcessOutcome] = []
        let start = try await inbox.databaseNow()
        while let outcome = try await processNext(dueBy: start) {
            outcomes.append(outcome)
        }
        return outcomes
    }

    func processNext(dueBy: Date? = nil) async throws(StoreError) -> ProcessOutcome? {
        let processor = self.processor
        let outcome = try await inbox.processNext(retry: settings.retry, dueBy: dueBy) { event, scope in
            try await processor.handle(event, in: scope)
        }
        if let outcome {
            report(outcome)
            observe(outcome)
        }
        return outcome
    }

    func loop() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                // Not waited for past its limit: a transaction stuck on a connection that closed under it must not
                // stop the loop (or the server's shutdown) for good.
                while !Task.isCancelled, try await abandoning(after: settings.eventTimeout, { try await processNext() }) != nil {}
                failures = 0
            } catch is CancellationError {
                break
            } catch let abandoned as Abandoned {
                logger.error("an event's transaction was abandoned; going on", metadata: ["reason": "\(abandoned)"])
                continue
            } catch {
                // The database is unreachable or refused the claim: nothing was lost; back off and try again.
                failures += 1
                if failures == 1 || failures.isMultiple(of: 20) {
                    logger.warning("inbox worker could not process", metadata: ["error": "\(error)", "failures": "\(failures)"])
                }
                try? await Task.sleep(for: Self.reconnectDelay(after: failures, limit: settings.pollInterval))
                continue
            }
            await doorbell.wait(timeout: settings.pollInterval)
        }
    }

    func listen(_ url: DatabaseURL) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                // Events stored while nobody listened are due now: ring once listening, then for each one stored.
                for try await _ in url.notifications(on: Self.channel, logger: logger) {
                    await doorbell.ring()
                }
                failures = 0
            } catch {
                if Task.isCancelled { return }
                failures += 1
                if failures == 1 || failures.isMultiple(of: 20) {
                    logger.warning("inbox LISTEN connection lost; polling meanwhile", metadata: [
                        "error": "\(StoreError.wrap(error, operation: "listen"))", "failures": "\(failures)",
                    ])
                }
            }
            try? await Task.sleep(for: Self.reconnectDelay(after: max(failures, 1), limit: .seconds(5)))
        }
    }

    /// After the database failed `failures` times in a row: 50 ms, doubling, at most `limit`.
    static func reconnectDelay(after failures: Int, limit: Duration) -> Duration {
        min(.milliseconds(50) * (1 << min(max(failures - 1, 0), 16)), limit)
    }

    func report(_ outcome: ProcessOutcome) {
        switch outcome {
        case .finished(let event, let disposition):
            logger.debug("stripe event handled", metadata: ["event": "\(event.id)", "type": "\(event.type)", "outcome": "\(disposition)"])
            if case .rejected(_, let reason) = disposition {
                logger.error("stripe event parked as failed", metadata: ["event": "\(event.id)", "type": "\(event.type)", "reason": "\(reason)"])
            }
        case .failed(let event, let error, let parked):
            logger.log(level: parked ? .error : .warning, "stripe event failed", metadata: [
                "event": "\(event.id)", "type": "\(event.type)", "error": "\(error)", "parked": "\(parked)",
            ])
        case .parked(let event, let note):
            logger.notice("unresolved stripe event parked", metadata: ["event": "\(event.id)", "type": "\(event.type)", "note": "\(note)"])
        }
    }
}

extension ProcessOutcome {
    public var event: ClaimedEvent {
        switch self {
        case .finished(let event, _), .failed(let event, _, _), .parked(let event, _): event
        }
    }

    /// For metrics: processed, ignored, stale, unresolved, rejected, retrying, parked (failed for good) or
    /// unresolved_parked.
    public var label: String {
        switch self {
        case .finished(_, .processed): "processed"
        case .finished(_, .ignored): "ignored"
        case .finished(_, .stale): "stale"
        case .finished(_, .unresolved): "unresolved"
        case .finished(_, .rejected): "rejected"
        case .failed(_, _, let parked): parked ? "parked" : "retrying"
        case .parked: "unresolved_parked"
        }
    }
}

/// Wakes waiting loops when an event arrives; a ring with nobody waiting is remembered once.
actor Doorbell {
    private var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var pending = false
    /// Numbers the waiters, so a timeout releases its own.
    private var lastWaiter = 0

    func ring() {
        if waiters.isEmpty {
            pending = true
            return
        }
        let woken = waiters
        waiters = [:]
        for continuation in woken.values { continuation.resume() }
    }

    func wait(timeout: Duration) async {
        if pending {
            pending = false
            return
        }
        lastWaiter += 1
        let id = lastWaiter
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.release(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                waiters[id] = continuation
            }
        } onCancel: {
            Task { await self.release(id) }
        }
        timer.cancel()
    }

    private func release(_ id: Int) {
        waiters.removeValue(forKey: id)?.resume()
    }
}
