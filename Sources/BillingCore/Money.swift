/// An amount of money in integer minor units (cents for USD) with its ISO 4217 currency, lower-cased as Stripe writes it.
public struct Money: Codable, Sendable, Equatable, Hashable {
    public var amount: Int
    public var currency: String

    public init(amount: Int, currency: String) {
        self.amount = amount
        self.currency = currency.lowercased()
    }

    /// As people read it: `USD 19.00`, `JPY 500`, `KWD 1.250`, with as many decimals as the currency's minor unit.
    public var formatted: String {
        let sign = amount < 0 ? "-" : ""
        let magnitude = abs(amount)
        let digits = Self.minorUnitDigits(currency)
        guard digits > 0 else { return "\(currency.uppercased()) \(sign)\(magnitude)" }
        var scale = 1
        for _ in 0..<digits { scale *= 10 }
        let fraction = String(magnitude % scale)
        return "\(currency.uppercased()) \(sign)\(magnitude / scale).\(String(repeating: "0", count: digits - fraction.count))\(fraction)"
    }

    /// Stripe's zero-decimal currencies, whose amounts are whole units (500 JPY is 500, not 5.00).
    public static let zeroDecimalCurrencies: Set<String> = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    ]
    /// Stripe's three-decimal currencies.
    public static let threeDecimalCurrencies: Set<String> = ["bhd", "jod", "kwd", "omr", "tnd"]

    /// How many decimals the currency's minor unit has, as Stripe counts its amounts.
    public static func minorUnitDigits(_ currency: String) -> Int {
        let code = currency.lowercased()
        return zeroDecimalCurrencies.contains(code) ? 0 : threeDecimalCurrencies.contains(code) ? 3 : 2
    }
}
