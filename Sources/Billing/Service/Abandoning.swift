import Foundation

/// An operation given up on: it ran past its limit (or its caller was cancelled) and was left to end on its own.
public struct Abandoned: Error, CustomStringConvertible {
    public let limit: Duration
    public var description: String {
        "did not finish within \(limit) and was abandoned (a database connection may have closed under it); what it held stays with it"
    }
}

/// `operation`'s result; or, once `limit` has passed, `Abandoned`; or, when the caller is cancelled,
/// `CancellationError`, at once.
///
/// Unlike a task group, this does not wait for an operation that ignores cancellation. PostgresNIO 1.33 never
/// answers a query written to a connection that closed a moment before (a database restart racing a lease), so a
/// worker waiting on one would stop for good, and so would the server's shutdown. The operation runs in a task of
/// its own, is cancelled, and is left to end (or not) by itself. Whatever it holds in the database (row locks, an
/// open transaction) stays with it until the database drops its connection, so nothing it was doing is done twice.
public func abandoning<T: Sendable>(after limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = AbandonableRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation, limit: limit, operation)
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// Who answers first: the operation, its timer, or the caller's cancellation. Each answers through `finish`, which
/// resumes the caller once and stops the other two.
private final class AbandonableRace<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var tasks: [Task<Void, Never>] = []
    /// An answer that came before the caller was waiting (a cancellation that raced the start).
    private var early: Result<T, any Error>?

    func start(_ continuation: CheckedContinuation<T, any Error>, limit: Duration, _ operation: @escaping @Sendable () async throws -> T) {
        lock.lock()
        if let early {
            lock.unlock()
            continuation.resume(with: early)
            return
        }
        self.continuation = continuation
        tasks = [
            Task { [self] in
                let result: Result<T, any Error>
                do { result = .success(try await operation()) } catch { result = .failure(error) }
                finish(result)
            },
            Task { [self] in
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                finish(.failure(Abandoned(limit: limit)))
            },
        ]
        lock.unlock()
    }

    func finish(_ result: Result<T, any Error>) {
        lock.lock()
        guard let continuation else {
            if early == nil, tasks.isEmpty { early = result }
            lock.unlock()
            return
        }
        self.continuation = nil
        let running = tasks
        lock.unlock()
        for task in running { task.cancel() }
        continuation.resume(with: result)
    }
}
