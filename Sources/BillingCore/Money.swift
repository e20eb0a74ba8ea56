/// An amount of money in integer minor units (cents for USD) with its ISO 4217 currency, lower-cased as Stripe writes it.
public struct Money: Codable, Sendable, Equatable, Hashable {
    public var amount: Int
    public var currency: String

    public init(amount: Int, currency: String) {
        self.amount = amount
        self.currency = currency.lowercased()
    }

    /// As people read it: `USD 19.00` (a two-decimal currency's minor units).
    public var formatted: String {
        let sign = amount < 0 ? "-" : ""
        let magnitude = abs(amount)
        let cents = magnitude % 100
        return "\(currency.uppercased()) \(sign)\(magnitude / 100).\(cents < 10 ? "0" : "")\(cents)"
    }
}
