import Foundation

public enum BillingInterval: String, Codable, Sendable, CaseIterable {
    case month, year
}

/// How a plan is charged: by a Stripe Billing subscription, or by this server's own invoicing engine.
public enum BillingMode: String, Codable, Sendable {
    case subscription, invoice
}

/// One (plan, interval) price: what the plan costs per seat and which Stripe price charges it.
public struct PlanPrice: Codable, Sendable, Equatable {
    public var interval: BillingInterval
    /// Per seat and interval, in minor units.
    public var amount: Int
    public var currency: String
    /// The Stripe price id; nil for a plan that is never bought (free).
    public var stripePriceID: String?

    enum CodingKeys: String, CodingKey {
        case interval, amount, currency
        case stripePriceID = "stripePriceId"
    }
}

public struct Plan: Codable, Sendable, Equatable {
    public var key: String
    public var name: String
    /// Marketing names accepted on input and never returned.
    public var aliases: [String]
    /// Orders plans for upgrade vs downgrade.
    public var rank: Int
    public var billing: BillingMode
    public var trialDays: Int
    public var seats: SeatRule
    public var prices: [PlanPrice]
    public var features: [String]
    public var limits: [String: Int]

    public var intervals: [BillingInterval] { prices.map(\.interval) }

    /// Nothing is paid for it (the default plan): moving to it means leaving the paid subscription.
    public var isFree: Bool { prices.allSatisfy { $0.amount == 0 } }

    public func price(for interval: BillingInterval) -> PlanPrice? {
        prices.first { $0.interval == interval }
    }
}

/// What a credit costs when bought through a top-up, and how many one top-up may buy.
public struct CreditPricing: Codable, Sendable, Equatable {
    public var currency: String
    /// Price of one credit in minor units; also the value of a credit applied to an invoice.
    public var unitAmount: Int
    public var minimum: Int
    public var maximum: Int
}

public enum CatalogError: Error, Equatable, CustomStringConvertible {
    case unknownPlan(String, known: [String])
    case intervalNotOffered(plan: String, interval: String, offered: [String])
    case notPurchasable(plan: String)
    case unknownPrice(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .unknownPlan(let name, let known):
            "unknown plan '\(name)'; use one of: \(known.joined(separator: ", "))"
        case .intervalNotOffered(let plan, let interval, let offered):
            "plan '\(plan)' is not offered per \(interval); use one of: \(offered.joined(separator: ", "))"
        case .notPurchasable(let plan):
            "plan '\(plan)' has no Stripe price and cannot be bought"
        case .unknownPrice(let id):
            "Stripe price '\(id)' is not in the plan catalog"
        case .invalid(let reason):
            "invalid plan catalog: \(reason)"
        }
    }
}

/// The plan catalog: data read from the plans file, never code.
public struct PlanCatalog: Codable, Sendable, Equatable {
    /// The plan of a tenant that has no subscription.
    public var defaultPlan: String
    public var plans: [Plan]
    public var credits: CreditPricing

    /// Decodes and validates a plans file.
    public static func load(json data: Data) throws -> PlanCatalog {
        let catalog: PlanCatalog
        do {
            catalog = try JSONDecoder().decode(PlanCatalog.self, from: data)
        } catch let error as DecodingError {
            throw CatalogError.invalid(error.readableDescription)
        }
        try catalog.validate()
        return catalog
    }

    public func validate() throws {
        var names = Set<String>()
        var priceIDs = Set<String>()
        for plan in plans {
            for name in [plan.key] + plan.aliases {
                guard names.insert(name.lowercased()).inserted else {
                    throw CatalogError.invalid("the name '\(name)' is used twice")
                }
            }
            let rule = plan.seats
            guard rule.min >= 1, rule.min <= rule.default, rule.default <= rule.max else {
                throw CatalogError.invalid("plan '\(plan.key)' needs 1 <= seats.min <= seats.default <= seats.max")
            }
            guard !plan.prices.isEmpty, Set(plan.intervals).count == plan.prices.count else {
                throw CatalogError.invalid("plan '\(plan.key)' needs one price per interval, at least one")
            }
            for price in plan.prices {
                guard price.amount >= 0 else { throw CatalogError.invalid("plan '\(plan.key)' has a negative price") }
                // This server charges an invoice-billed plan's card itself, and Stripe refuses less than its minimum.
                let least = Money(amount: price.amount * rule.min, currency: price.currency)
                let minimum = Money.minimumCharge(price.currency)
                if plan.billing == .invoice, least.amount > 0, least.amount < minimum.amount {
                    throw CatalogError.invalid(
                        "plan '\(plan.key)' bills \(least.formatted) per \(price.interval.rawValue) at \(rule.min) seat(s), below Stripe's minimum charge of \(minimum.formatted); raise its price or seats.min")
                }
                if let id = price.stripePriceID, !priceIDs.insert(id).inserted {
                    throw CatalogError.invalid("Stripe price '\(id)' is used twice")
                }
            }
            guard plan.trialDays >= 0 else { throw CatalogError.invalid("plan '\(plan.key)' has negative trialDays") }
        }
        guard plans.contains(where: { $0.key == defaultPlan }) else {
            throw CatalogError.invalid("defaultPlan '\(defaultPlan)' is not a plan")
        }
        guard credits.unitAmount > 0, credits.minimum >= 1, credits.minimum <= credits.maximum else {
            throw CatalogError.invalid("credits need unitAmount > 0 and 1 <= minimum <= maximum")
        }
        let smallestTopUp = Money(amount: credits.minimum * credits.unitAmount, currency: credits.currency)
        let minimum = Money.minimumCharge(credits.currency)
        guard smallestTopUp.amount >= minimum.amount else {
            throw CatalogError.invalid(
                "the smallest top-up (\(credits.minimum) credits) costs \(smallestTopUp.formatted), below Stripe's minimum charge of \(minimum.formatted); raise credits.minimum")
        }
    }

    /// Applies `STRIPE_PRICE_<PLAN>_<INTERVAL>` overrides from the environment.
    public func withPriceOverrides(from environment: [String: String]) -> PlanCatalog {
        var copy = self
        for planIndex in copy.plans.indices {
            let key = copy.plans[planIndex].key.uppercased()
            for priceIndex in copy.plans[planIndex].prices.indices {
                let interval = copy.plans[planIndex].prices[priceIndex].interval.rawValue.uppercased()
                if let id = environment["STRIPE_PRICE_\(key)_\(interval)"], !id.isEmpty {
                    copy.plans[planIndex].prices[priceIndex].stripePriceID = id
                }
            }
        }
        return copy
    }

    /// The plan called `name`, by key or alias, ignoring case.
    public func plan(named name: String) throws -> Plan {
        let wanted = name.lowercased()
        if let plan = plans.first(where: { $0.key == wanted || $0.aliases.contains { $0.lowercased() == wanted } }) {
            return plan
        }
        throw CatalogError.unknownPlan(name, known: plans.map(\.key))
    }

    public var fallbackPlan: Plan { plans.first { $0.key == defaultPlan }! }

    /// The price of `plan` per `interval`; the server alone maps a plan to a Stripe price.
    public func price(of plan: Plan, per interval: BillingInterval) throws -> PlanPrice {
        guard let price = plan.price(for: interval) else {
            throw CatalogError.intervalNotOffered(
                plan: plan.key, interval: interval.rawValue, offered: plan.intervals.map(\.rawValue))
        }
        return price
    }

    public func stripePriceID(of plan: Plan, per interval: BillingInterval) throws -> String {
        guard let id = try price(of: plan, per: interval).stripePriceID else {
            throw CatalogError.notPurchasable(plan: plan.key)
        }
        return id
    }

    /// Maps a Stripe price id back to its plan and interval; an unknown price is an error, never a silent downgrade.
    public func plan(forStripePrice id: String) throws -> (plan: Plan, interval: BillingInterval) {
        for plan in plans {
            if let price = plan.prices.first(where: { $0.stripePriceID == id }) {
                return (plan, price.interval)
            }
        }
        throw CatalogError.unknownPrice(id)
    }
}

extension DecodingError {
    /// "field.path: what was wrong", without Swift type names.
    public var readableDescription: String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
                .replacingOccurrences(of: ".[", with: "[")
        }
        switch self {
        case .keyNotFound(let key, let context):
            let parent = path(context.codingPath)
            return "\(parent.isEmpty ? "" : parent + ".")\(key.stringValue) is required"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) must be \(JSONTypeName.of(type))"
        case .dataCorrupted(let context):
            let at = path(context.codingPath)
            return at.isEmpty ? "not valid JSON" : "\(at): \(context.debugDescription)"
        @unknown default:
            return "invalid"
        }
    }
}

/// The JSON name of a Swift type, for messages a client reads.
public enum JSONTypeName {
    public static func of(_ type: Any.Type) -> String {
        switch type {
        case is String.Type, is Substring.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is Bool.Type: "a boolean"
        case is [Any].Type: "an array"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" :
                String(describing: type).hasPrefix("Dictionary") ? "an object" : "a valid value"
        }
    }
}

/// Which way a plan change goes: by the catalog's rank; on one plan, month to year is an upgrade.
public enum PlanChangeDirection: String, Sendable, Equatable {
    case same, upgrade, downgrade

    public init(from current: Plan, _ currentInterval: BillingInterval, to target: Plan, _ targetInterval: BillingInterval) {
        if target.rank != current.rank {
            self = target.rank > current.rank ? .upgrade : .downgrade
        } else if target.key != current.key {
            // Plans of equal rank: a sideways move takes effect at the period's end, like a downgrade.
            self = .downgrade
        } else if targetInterval == currentInterval {
            self = .same
        } else {
            self = targetInterval == .year ? .upgrade : .downgrade
        }
    }
}
