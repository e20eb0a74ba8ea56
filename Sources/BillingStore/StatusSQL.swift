import BillingCore

/// Statuses as an SQL list, `('action_required', 'open')`, written from BillingCore's enums (and their predicates), so
/// no query spells a status of its own.
func sqlList<Status: RawRepresentable<String>>(_ statuses: some Sequence<Status>) -> String {
    "(" + statuses.map { "'\($0.rawValue)'" }.sorted().joined(separator: ", ") + ")"
}

extension SubscriptionStatus {
    /// For `status NOT IN ...`: the statuses a subscription never leaves.
    static let terminalSQL = sqlList(terminal)
}

extension InvoiceStatus {
    static let collectibleSQL = sqlList(allCases.filter(\.isCollectible))
    static let overdueSQL = sqlList([InvoiceStatus.overdue])
    static let openSQL = sqlList([InvoiceStatus.open])
}
