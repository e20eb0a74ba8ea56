import Foundation

/// Stripe's subscription statuses.
public enum SubscriptionStatus: String, Codable, Sendable, CaseIterable {
    case active, trialing, pastDue = "past_due", unpaid, canceled, incomplete
    case incompleteExpired = "incomplete_expired", paused

    /// The statuses a subscription never leaves: it is over, and a new one is needed.
    public static let terminal: Set<SubscriptionStatus> = [.canceled, .incompleteExpired]

    public var isTerminal: Bool { Self.terminal.contains(self) }

    /// Whether `status` (as Stripe or a stored row spells it) is terminal; an unknown status is not.
    public static func isTerminal(_ status: String) -> Bool { SubscriptionStatus(rawValue: status)?.isTerminal ?? false }
}

/// Whether a tenant may use what its plan gives, and until when a past-due tenant keeps it.
public struct Entitlement: Sendable, Equatable {
    public var entitled: Bool
    public var graceEndsAt: Date?

    public init(entitled: Bool, graceEndsAt: Date? = nil) {
        self.entitled = entitled
        self.graceEndsAt = graceEndsAt
    }

    /// `active` and `trialing` are entitled; `past_due` is for `grace` after it became past due;
    /// every other status is not (`incomplete` not yet).
    public static func evaluate(
        status: SubscriptionStatus, pastDueSince: Date?, now: Date, grace: Duration
    ) -> Entitlement {
        switch status {
        case .active, .trialing:
            return Entitlement(entitled: true)
        case .pastDue:
            let since = pastDueSince ?? now
            let ends = since.addingTimeInterval(TimeInterval(grace.components.seconds))
            return Entitlement(entitled: now < ends, graceEndsAt: ends)
        case .unpaid, .canceled, .incomplete, .incompleteExpired, .paused:
            return Entitlement(entitled: false)
        }
    }
}
