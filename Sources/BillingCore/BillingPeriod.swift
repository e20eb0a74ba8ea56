import Foundation

/// Billing periods by the calendar, in UTC: a month from January 31 ends on the last day of February, and the next
/// period, counted from the anchor, ends on March 31 again (not March 28).
public enum BillingPeriod {
    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// The end of the period that starts at `start`: one interval later.
    public static func end(from start: Date, interval: BillingInterval) -> Date {
        utc.date(byAdding: interval.component, value: 1, to: start)
            ?? start.addingTimeInterval(interval == .year ? 31_536_000 : 2_592_000)
    }

    /// The first period boundary after `start`, counted in whole intervals from the subscription's `anchor`.
    public static func boundary(after start: Date, anchor: Date, interval: BillingInterval) -> Date {
        for count in 1..<10_000 {
            if let next = utc.date(byAdding: interval.component, value: count, to: anchor), next > start { return next }
        }
        return end(from: start, interval: interval)
    }
}

extension BillingInterval {
    var component: Calendar.Component { self == .year ? .year : .month }
}
