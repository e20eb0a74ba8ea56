import Billing
import Foundation
import Testing

/// A wait that nothing ends, not even cancellation: what a query written to a closed PostgresNIO connection does.
private final class Stuck: @unchecked Sendable {
    private let lock = NSLock()
    private var held: [CheckedContinuation<Void, Never>] = []

    func forever() async {
        await withCheckedContinuation { continuation in
            lock.lock()
            held.append(continuation)
            lock.unlock()
        }
    }

    func release() {
        lock.lock()
        let waiting = held
        held = []
        lock.unlock()
        for continuation in waiting { continuation.resume() }
    }
}

/// `abandoning` gives an answer in time even when its operation never ends and ignores cancellation.
@Suite struct AbandoningTests {
    @Test func aQuickOperationsAnswerAndErrorComeThrough() async throws {
        #expect(try await abandoning(after: .seconds(5)) { 42 } == 42)
        struct Refused: Error {}
        await #expect(throws: Refused.self) { try await abandoning(after: .seconds(5)) { () async throws -> Int in throw Refused() } }
    }

    @Test func anOperationThatNeverEndsIsAbandonedAtItsLimit() async throws {
        let stuck = Stuck()
        defer { stuck.release() }
        let started = ContinuousClock.now
        await #expect(throws: Abandoned.self) {
            try await abandoning(after: .milliseconds(200)) { await stuck.forever(); return 1 }
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func theCallersCancellationAnswersAtOnce() async throws {
        let stuck = Stuck()
        defer { stuck.release() }
        let waiting = Task { try await abandoning(after: .seconds(600)) { await stuck.forever(); return 1 } }
        try await Task.sleep(for: .milliseconds(100))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }
}
