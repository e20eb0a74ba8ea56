import BillingCore
import Foundation
import Testing

/// The dunning schedule, read as a table: after the n-th failed attempt, when the next one is, and whether it is the
/// last; past the schedule, overdue.
@Suite struct DunningScheduleTests {
    static let firstFailure = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01T00:00:00Z
    static let day: TimeInterval = 86400

    @Test(arguments: [
        // days,        failures, next attempt (days after the first failure, nil: overdue), last
        ([1, 3, 5, 7], 0, 1, false),  // a count of 0 is the first failure
        ([1, 3, 5, 7], 1, 1, false),
        ([1, 3, 5, 7], 2, 3, false),
        ([1, 3, 5, 7], 3, 5, false),
        ([1, 3, 5, 7], 4, 7, true),
        ([1, 3, 5, 7], 5, nil, false),
        ([1, 3, 5, 7], 9, nil, false),
        ([2], 1, 2, true),
        ([2], 2, nil, false),
        ([], 1, 1, true),  // an empty schedule is one retry a day later
    ] as [([Int], Int, Int?, Bool)])
    func afterEachFailure(days: [Int], failures: Int, next: Int?, isLast: Bool) {
        let step = DunningSchedule(days: days).step(afterFailures: failures, firstFailedAt: Self.firstFailure)
        if let next {
            #expect(step == .retry(at: Self.firstFailure.addingTimeInterval(Double(next) * Self.day), isLast: isLast))
        } else {
            #expect(step == .overdue)
        }
    }

    @Test func aLateRunMayTakeEveryAttemptThenOverdueThenTheWriteOff() {
        #expect(DunningSchedule(days: [1, 3, 5, 7]).maximumSteps == 7)
    }

    @Test(arguments: [("declined", true), ("error", true), ("action_required", true), ("succeeded", false), ("processing", false)])
    func whichOutcomesCountAsFailures(outcome: String, counts: Bool) {
        #expect(DunningSchedule.failedOutcomes.contains(outcome) == counts)
    }
}

/// Which subscription statuses are over for good: one table for Swift and SQL alike.
@Suite struct SubscriptionStatusTests {
    @Test(arguments: [
        ("active", false), ("trialing", false), ("past_due", false), ("unpaid", false), ("incomplete", false), ("paused", false),
        ("canceled", true), ("incomplete_expired", true), ("something_new", false),
    ])
    func terminal(status: String, isTerminal: Bool) {
        #expect(SubscriptionStatus.isTerminal(status) == isTerminal)
    }
}

/// What an operator and the collection job may do to an invoice in each status, as a table.
@Suite struct InvoiceStatusTests {
    @Test(arguments: [
        // status,           voidable, retryable, collectible, settled
        (InvoiceStatus.draft, true, false, false, false),
        (.open, true, true, true, false),
        (.processing, false, false, false, false),
        (.actionRequired, true, true, true, false),
        (.overdue, true, true, false, false),
        (.paid, false, false, false, true),
        (.void, false, false, false, true),
        (.writtenOff, false, false, false, false),
    ])
    func whatEachStatusAllows(status: InvoiceStatus, voidable: Bool, retryable: Bool, collectible: Bool, settled: Bool) {
        #expect(status.isVoidable == voidable)
        #expect(status.isRetryable == retryable)
        #expect(status.isCollectible == collectible)
        #expect(status.isSettled == settled)
    }

    @Test(arguments: [
        // from,             allowed next statuses
        (InvoiceStatus.draft, [InvoiceStatus.open, .paid, .void]),
        (.open, [.processing, .actionRequired, .overdue, .paid, .void]),
        (.actionRequired, [.processing, .actionRequired, .overdue, .paid, .void]),
        (.processing, [.paid]),
        (.overdue, [.open, .writtenOff, .paid, .void]),
        (.writtenOff, [.paid]),
        (.paid, []),
        (.void, []),
    ])
    func transitions(from: InvoiceStatus, allowed: [InvoiceStatus]) throws {
        for next in InvoiceStatus.allCases {
            if allowed.contains(next) {
                #expect(try from.moved(to: next) == next)
            } else {
                #expect(throws: InvoiceTransitionError(from: from, to: next)) { try from.moved(to: next) }
            }
        }
    }

    @Test func aRefusedMoveSaysWhich() {
        #expect("\(InvoiceTransitionError(from: .paid, to: .open))" == "an invoice that is paid cannot become open")
    }

    @Test func everyStatusAnOperatorMayActOnCanMoveThatWay() {
        for status in InvoiceStatus.allCases {
            if status.isVoidable { #expect(status.next.contains(.void)) }
            if status.isCollectible { #expect(status.next.contains(.processing)) }
            if !status.isSettled { #expect(status.next.contains(.paid)) }
        }
    }

    @Test func spelledAsStoredEverywhere() {
        #expect("\(InvoiceStatus.actionRequired)" == "action_required")
        #expect(InvoiceStatus(rawValue: "written_off") == .writtenOff)
    }
}

/// The handled Stripe event types: each spelled as Stripe spells it, each with its handler's family.
@Suite struct StripeEventTypeTests {
    @Test(arguments: [
        ("checkout.session.completed", StripeEventType.Family.checkoutCompleted),
        ("checkout.session.async_payment_failed", .checkoutClosed),
        ("charge.refund.updated", .refund),
        ("customer.subscription.pending_update_expired", .subscription),
        ("invoice.finalization_failed", .invoice),
        ("invoice_payment.paid", .invoicePayment),
        ("subscription_schedule.aborted", .schedule),
        ("payment_method.automatically_updated", .paymentMethodUpdated),
    ])
    func eachTypeHasItsHandler(type: String, family: StripeEventType.Family) {
        #expect(StripeEventType(rawValue: type)?.family == family)
    }

    @Test func everyFamilyHandlesSomeTypeAndUnknownTypesAreNotHandled() {
        #expect(Set(StripeEventType.allCases.map(\.family)).count == StripeEventType.Family.allCases.count)
        #expect(StripeEventType.allCases.count == 48)
        #expect(StripeEventType(rawValue: "customer.created") == nil)
        #expect(StripeEventType(rawValue: "v2.core.event_destination.ping") == nil)
    }
}

/// Period ends across month lengths and leap years, as a table (UTC).
@Suite struct BillingPeriodTests {
    static func date(_ text: String) -> Date { try! Date(text, strategy: .iso8601) }

    @Test(arguments: [
        ("2026-01-15T10:00:00Z", BillingInterval.month, "2026-02-15T10:00:00Z"),
        ("2026-01-31T00:00:00Z", .month, "2026-02-28T00:00:00Z"),
        ("2028-01-31T00:00:00Z", .month, "2028-02-29T00:00:00Z"),
        ("2026-03-31T00:00:00Z", .month, "2026-04-30T00:00:00Z"),
        ("2026-12-31T23:59:59Z", .month, "2027-01-31T23:59:59Z"),
        ("2028-02-29T00:00:00Z", .year, "2029-02-28T00:00:00Z"),
        ("2026-06-01T00:00:00Z", .year, "2027-06-01T00:00:00Z"),
    ])
    func periodEnds(start: String, interval: BillingInterval, end: String) {
        #expect(BillingPeriod.end(from: Self.date(start), interval: interval) == Self.date(end))
    }

    /// Counted from the anchor, a short month does not shorten the months after it.
    @Test(arguments: [
        ("2026-01-31T00:00:00Z", "2026-01-31T00:00:00Z", BillingInterval.month, "2026-02-28T00:00:00Z"),
        ("2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z", .month, "2026-03-31T00:00:00Z"),
        ("2026-01-31T00:00:00Z", "2026-04-15T00:00:00Z", .month, "2026-04-30T00:00:00Z"),
        ("2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z", .year, "2030-02-28T00:00:00Z"),
        ("2028-02-29T00:00:00Z", "2031-06-01T00:00:00Z", .year, "2032-02-29T00:00:00Z"),
    ])
    func boundariesFromTheAnchor(anchor: String, after: String, interval: BillingInterval, boundary: String) {
        #expect(BillingPeriod.boundary(after: Self.date(after), anchor: Self.date(anchor), interval: interval) == Self.date(boundary))
    }
}
