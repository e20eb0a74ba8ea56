import Foundation

extension Date {
    /// Whether this time is at or before `other` as the database keeps times: in whole microseconds.
    ///
    /// A `Date` written to PostgreSQL and read back can come back a fraction of a microsecond later than it was
    /// written (the wire format is microseconds, `Date` a `Double` of seconds), so a period that starts "now" and
    /// is compared with the `now` it was written from must not use `<=` on the raw values: about one time in three
    /// hundred it would not yet be due.
    public func isAtOrBefore(_ other: Date) -> Bool {
        databaseMicroseconds <= other.databaseMicroseconds
    }

    /// This time as PostgresNIO writes a `timestamptz`: whole microseconds since 2000-01-01, truncated toward zero.
    var databaseMicroseconds: Int64 {
        Int64(timeIntervalSince(Self.databaseEpoch) * 1_000_000)
    }

    private static let databaseEpoch = Date(timeIntervalSince1970: 946_684_800)
}
