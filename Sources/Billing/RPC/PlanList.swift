import BillingCore
import BillingStore
import Foundation

/// `billing.plans`: the catalog as clients see it (no Stripe price ids: the server alone maps plans to prices).
public struct PlanList: Encodable, Sendable {
    public struct Entry: Encodable, Sendable {
        public struct Price: Encodable, Sendable {
            var interval: BillingInterval
            var amount: Int
            var currency: String
        }
        var key: String
        var name: String
        var aliases: [String]
        var rank: Int
        var billing: BillingMode
        var trialDays: Int
        var intervals: [BillingInterval]
        var seats: SeatRule
        var prices: [Price]
        var features: [String]
        var limits: [String: Int]
    }
    var defaultPlan: String
    var plans: [Entry]
    var credits: CreditPricing

    public init(_ catalog: PlanCatalog) {
        defaultPlan = catalog.defaultPlan
        credits = catalog.credits
        plans = catalog.plans.map { plan in
            Entry(
                key: plan.key, name: plan.name, aliases: plan.aliases, rank: plan.rank, billing: plan.billing,
                trialDays: plan.trialDays, intervals: plan.intervals, seats: plan.seats,
                prices: plan.prices.map { Entry.Price(interval: $0.interval, amount: $0.amount, currency: $0.currency) },
                features: plan.features, limits: plan.limits)
        }
    }
}
