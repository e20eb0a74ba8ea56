import BillingCore

extension SubscriptionStatus {
    /// The terminal statuses as an SQL list, `('canceled', 'incomplete_expired')`, for `status NOT IN ...`: written
    /// from the enum, so no query keeps a list of its own.
    static let terminalSQL = "(" + terminal.map { "'\($0.rawValue)'" }.sorted().joined(separator: ", ") + ")"
}

extension InvoiceStatus {
    /// Statuses as an SQL list, `('action_required', 'open')`, written from the enum (and its predicates, such as
    /// `isCollectible`), so no query spells a status of its own.
    static func sqlList(_ statuses: [InvoiceStatus]) -> String {
        "(" + statuses.map { "'\($0.rawValue)'" }.sorted().joined(separator: ", ") + ")"
    }

    static let collectibleSQL = sqlList(allCases.filter(\.isCollectible))
    static let overdueSQL = sqlList([.overdue])
    static let openSQL = sqlList([.open])
}
