/// What an invoice this server issues comes to: its lines, the wallet credits applied to them, and what is left for
/// the card.
///
/// Credits are applied first, whole credits at the catalog's value each, never more than the subtotal. Stripe charges
/// no less than its minimum for the currency (50 cents in USD, 30 pence in GBP), so credits never leave a remainder
/// below it: they cover less, and the card pays the minimum. An invoice the credits cover whole is paid at issue.
public struct InvoiceTotals: Sendable, Equatable {
    public var subtotal: Int
    /// Whole credits taken from the wallet.
    public var creditsApplied: Int
    /// What those credits are worth, in the invoice's minor units.
    public var creditAmount: Int
    /// What is left for the card.
    public var amountDue: Int

    public init(subtotal: Int, creditsApplied: Int, creditAmount: Int, amountDue: Int) {
        self.subtotal = subtotal
        self.creditsApplied = creditsApplied
        self.creditAmount = creditAmount
        self.amountDue = amountDue
    }

    /// The totals of lines adding up to `subtotal` with `availableCredits` in the wallet, each worth `creditValue`.
    /// A negative balance (a debt) applies nothing.
    public static func applying(availableCredits: Int, worth creditValue: Int, to subtotal: Int, currency: String) -> InvoiceTotals {
        guard creditValue > 0, subtotal > 0 else { return uncredited(subtotal) }
        var credits = min(max(0, availableCredits), subtotal / creditValue)
        let minimum = Money.minimumCharge(currency).amount
        let remainder = subtotal - credits * creditValue
        if remainder > 0 && remainder < minimum {
            credits = max(0, (subtotal - minimum) / creditValue)
        }
        return InvoiceTotals(
            subtotal: subtotal, creditsApplied: credits, creditAmount: credits * creditValue, amountDue: subtotal - credits * creditValue)
    }

    /// No credits applied: the card pays the whole subtotal.
    public static func uncredited(_ subtotal: Int) -> InvoiceTotals {
        InvoiceTotals(subtotal: subtotal, creditsApplied: 0, creditAmount: 0, amountDue: subtotal)
    }

    /// Paid at issue: the credits cover it all.
    public var isPaidByCredits: Bool { amountDue == 0 }
}
