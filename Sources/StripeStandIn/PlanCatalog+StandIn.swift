import BillingCore
import StripeStandIn

extension PlanCatalog {
    /// Every Stripe price of the catalog, as the stand-in sells it.
    public var standInPrices: [StandInPrice] {
        plans.flatMap { plan in
            plan.prices.compactMap { price in
                price.stripePriceID.map {
                    StandInPrice(id: $0, unitAmount: price.amount, currency: price.currency, interval: price.interval.rawValue,
                                 productName: plan.name)
                }
            }
        }
    }
}
