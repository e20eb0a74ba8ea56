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

    /// The least Stripe charges a card in `currency`: its published table of minimum charge amounts, and 50 minor
    /// units (the USD minimum) for a currency the table does not name.
    public static func minimumCharge(_ currency: String) -> Money {
        Money(amount: minimumCharges[currency.lowercased()] ?? 50, currency: currency)
    }

    static let minimumCharges: [String: Int] = [
        "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500, "dkk": 250, "eur": 50,
        "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50,
        "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
    ]

    /// How many decimals the currency's minor unit has, as Stripe counts its amounts.
    public static func minorUnitDigits(_ currency: String) -> Int {
        let code = currency.lowercased()
        return zeroDecimalCurrencies.contains(code) ? 0 : threeDecimalCurrencies.contains(code) ? 3 : 2
    }
}
