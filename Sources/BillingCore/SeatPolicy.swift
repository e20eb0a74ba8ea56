/// A plan's seat range: free and pro have exactly one seat, team a configured range.
public struct SeatRule: Codable, Sendable, Equatable {
    public var min: Int
    public var max: Int
    public var `default`: Int

    public init(min: Int, max: Int, default: Int) {
        self.min = min
        self.max = max
        self.default = `default`
    }

    /// True when a tenant can choose a seat count on this plan.
    public var isAdjustable: Bool { min != max }

    public var rangeDescription: String {
        min == max ? "exactly \(min)" : "between \(min) and \(max)"
    }

    public func contains(_ seats: Int) -> Bool { (min...max).contains(seats) }

    /// Checks seats a client asked for; outside the range is refused, never clamped.
    public func validate(_ seats: Int, plan: String) throws(SeatError) {
        guard contains(seats) else {
            throw SeatError(plan: plan, requested: seats, rule: self)
        }
    }

    /// Seat counts from Stripe (missing, zero, negative or too many) are brought into the range.
    public func normalize(_ seats: Int?) -> Int {
        guard let seats, seats >= min else { return min }
        return Swift.min(seats, max)
    }
}

public struct SeatError: Error, Equatable, CustomStringConvertible {
    public var plan: String
    public var requested: Int
    public var rule: SeatRule

    public var description: String {
        "seats must be \(rule.rangeDescription) on plan '\(plan)' (got \(requested))"
    }
}
