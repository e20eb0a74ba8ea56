/// An amount of money in integer minor units (cents for USD) with its ISO 4217 currency, lower-cased as Stripe writes it.
public struct Money: Codable, Sendable, Equatable, Hashable {
    public var amount: Int
    public var currency: String

    public init(amount: Int, currency: String) {
        self.amount = amount
        self.currency = currency.lowercased()
    }
}
