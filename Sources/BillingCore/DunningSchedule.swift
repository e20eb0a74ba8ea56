import Foundation

/// When a failed invoice is tried again: on each of `days` after its first failed attempt (day 1, 3, 5, 7 by default),
/// and after a failure past the last one the invoice is overdue. The tenant stays entitled until then.
public struct DunningSchedule: Sendable, Equatable {
    /// Days after the first failure, ascending; never empty.
    public let days: [Int]

    public init(days: [Int]) {
        self.days = days.isEmpty ? [1] : days
    }

    /// The attempt outcomes that count against the schedule.
    public static let failedOutcomes: Set<String> = ["declined", "error", "action_required"]

    /// What follows the `failures`-th failed attempt (counting from 1) of an invoice whose first failure was at
    /// `firstFailedAt`.
    public enum Step: Sendable, Equatable {
        /// Try again then; `isLast`: that attempt is the last one (the tenant gets a final notice).
        case retry(at: Date, isLast: Bool)
        /// No attempt is left: the invoice is overdue and the tenant loses its entitlement.
        case overdue
    }

    public func step(afterFailures failures: Int, firstFailedAt: Date) -> Step {
        let failures = max(1, failures)
        guard failures <= days.count else { return .overdue }
        return .retry(at: firstFailedAt.addingTimeInterval(Double(days[failures - 1]) * 86400), isLast: failures == days.count)
    }

    /// How many steps one late collection run may take on an invoice: every attempt, then overdue, then a write-off.
    public var maximumSteps: Int { days.count + 3 }
}
