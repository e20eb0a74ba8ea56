import BillingCore
import Foundation
import Testing

/// The checked-in default catalog, read as the server reads it.
func defaultCatalog() throws -> PlanCatalog {
    let file = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("config/plans.json")
    return try PlanCatalog.load(json: try Data(contentsOf: file))
}

@Suite struct PlanCatalogTests {
    @Test func defaultFileHasTheCanonicalPlans() throws {
        let catalog = try defaultCatalog()
        #expect(catalog.plans.map(\.key) == ["free", "pro", "team", "enterprise"])
        #expect(catalog.defaultPlan == "free")
        for plan in catalog.plans {
            #expect(plan.intervals == [.month, .year])
        }
        #expect(catalog.credits.minimum <= catalog.credits.maximum)
    }

    @Test(arguments: [
        ("pro", "pro"), ("strategos", "pro"), ("STRATEGOS", "pro"), ("team", "team"), ("archon", "team"),
        ("Archon", "team"), ("free", "free"),
    ])
    func aliasesMapToCanonicalKeys(input: String, key: String) throws {
        #expect(try defaultCatalog().plan(named: input).key == key)
    }

    @Test func unknownPlanNamesTheValidKeys() throws {
        #expect(throws: CatalogError.unknownPlan("gold", known: ["free", "pro", "team", "enterprise"])) {
            try defaultCatalog().plan(named: "gold")
        }
        #expect(CatalogError.unknownPlan("gold", known: ["free", "pro"]).description.contains("use one of: free, pro"))
    }

    @Test func pricesMapBothWays() throws {
        let catalog = try defaultCatalog()
        let team = try catalog.plan(named: "archon")
        #expect(try catalog.stripePriceID(of: team, per: .year) == "price_team_year")
        let back = try catalog.plan(forStripePrice: "price_pro_month")
        #expect(back.plan.key == "pro")
        #expect(back.interval == .month)
    }

    @Test func unknownPriceIsAnErrorNotADowngrade() throws {
        #expect(throws: CatalogError.unknownPrice("price_gone")) {
            try defaultCatalog().plan(forStripePrice: "price_gone")
        }
    }

    @Test func freeHasNoStripePrice() throws {
        let catalog = try defaultCatalog()
        #expect(throws: CatalogError.notPurchasable(plan: "free")) {
            try catalog.stripePriceID(of: try catalog.plan(named: "free"), per: .month)
        }
    }

    @Test func environmentOverridesPriceIDs() throws {
        let catalog = try defaultCatalog().withPriceOverrides(from: [
            "STRIPE_PRICE_TEAM_MONTH": "price_live_team_m", "STRIPE_PRICE_PRO_YEAR": "price_live_pro_y", "UNRELATED": "x",
        ])
        #expect(try catalog.stripePriceID(of: try catalog.plan(named: "team"), per: .month) == "price_live_team_m")
        #expect(try catalog.stripePriceID(of: try catalog.plan(named: "pro"), per: .year) == "price_live_pro_y")
        #expect(try catalog.stripePriceID(of: try catalog.plan(named: "pro"), per: .month) == "price_pro_month")
        #expect(try catalog.plan(forStripePrice: "price_live_team_m").plan.key == "team")
        #expect(throws: CatalogError.unknownPrice("price_team_month")) {
            try catalog.plan(forStripePrice: "price_team_month")
        }
    }

    @Test func invalidCatalogsAreRefusedWithTheReason() throws {
        var catalog = try defaultCatalog()
        catalog.plans[1].aliases = ["archon"]
        #expect(throws: CatalogError.invalid("the name 'archon' is used twice")) { try catalog.validate() }

        catalog = try defaultCatalog()
        catalog.plans[2].seats = SeatRule(min: 5, max: 3, default: 4)
        #expect(throws: CatalogError.self) { try catalog.validate() }

        catalog = try defaultCatalog()
        catalog.defaultPlan = "gold"
        #expect(throws: CatalogError.invalid("defaultPlan 'gold' is not a plan")) { try catalog.validate() }

        // Stripe refuses a charge below its minimum for the currency: no top-up or invoice-billed plan may ask for one.
        catalog = try defaultCatalog()
        catalog.credits.currency = "gbp"
        catalog.credits.unitAmount = 1
        catalog.credits.minimum = 20
        #expect(throws: CatalogError.invalid(
            "the smallest top-up (20 credits) costs GBP 0.20, below Stripe's minimum charge of GBP 0.30; raise credits.minimum")
        ) { try catalog.validate() }
        catalog.credits.minimum = 30
        try catalog.validate()

        catalog = try defaultCatalog()
        let enterprise = try #require(catalog.plans.firstIndex { $0.key == "enterprise" })
        catalog.plans[enterprise].prices[0].amount = 50
        catalog.plans[enterprise].prices[0].currency = "hkd"
        #expect(throws: CatalogError.invalid(
            "plan 'enterprise' bills HKD 2.50 per month at 5 seat(s), below Stripe's minimum charge of HKD 4.00; raise its price or seats.min")
        ) { try catalog.validate() }

        let broken = Data(#"{"defaultPlan":"free","plans":[{"key":"free"}],"credits":{}}"#.utf8)
        #expect(throws: CatalogError.self) { try PlanCatalog.load(json: broken) }
    }
}

@Suite struct SeatPolicyTests {
    @Test func freeAndProHaveExactlyOneSeat() throws {
        let catalog = try defaultCatalog()
        for key in ["free", "pro"] {
            let rule = try catalog.plan(named: key).seats
            #expect(rule.min == 1 && rule.max == 1)
            #expect(!rule.isAdjustable)
            #expect(throws: SeatError.self) { try rule.validate(2, plan: key) }
        }
    }

    @Test(arguments: [3, 4, 50])
    func teamAcceptsItsRange(seats: Int) throws {
        try defaultCatalog().plan(named: "team").seats.validate(seats, plan: "team")
    }

    @Test(arguments: [-1, 0, 2, 51, 1000])
    func teamRefusesOutsideTheRangeAndSaysTheRange(seats: Int) throws {
        let rule = try defaultCatalog().plan(named: "team").seats
        do {
            try rule.validate(seats, plan: "team")
            Issue.record("\(seats) seats were accepted")
        } catch {
            #expect(error.description == "seats must be between 3 and 50 on plan 'team' (got \(seats))")
        }
    }

    @Test func seatsFromStripeAreNormalizedIntoTheRange() throws {
        let team = try defaultCatalog().plan(named: "team").seats
        #expect(team.normalize(nil) == 3)
        #expect(team.normalize(0) == 3)
        #expect(team.normalize(-4) == 3)
        #expect(team.normalize(2) == 3)
        #expect(team.normalize(7) == 7)
        #expect(team.normalize(51) == 50)
        let pro = try defaultCatalog().plan(named: "pro").seats
        #expect(pro.normalize(5) == 1)
        #expect(pro.normalize(nil) == 1)
    }
}

@Suite struct EntitlementTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let grace = Duration.seconds(3 * 24 * 3600)

    @Test(arguments: [SubscriptionStatus.active, .trialing])
    func activeAndTrialingAreEntitled(status: SubscriptionStatus) {
        #expect(Entitlement.evaluate(status: status, pastDueSince: nil, now: now, grace: grace) == Entitlement(entitled: true))
    }

    @Test(arguments: [SubscriptionStatus.unpaid, .canceled, .incomplete, .incompleteExpired, .paused])
    func othersAreNot(status: SubscriptionStatus) {
        #expect(!Entitlement.evaluate(status: status, pastDueSince: nil, now: now, grace: grace).entitled)
    }

    @Test func pastDueKeepsEntitlementForTheGracePeriod() {
        let since = now.addingTimeInterval(-2 * 24 * 3600)
        let inside = Entitlement.evaluate(status: .pastDue, pastDueSince: since, now: now, grace: grace)
        #expect(inside.entitled)
        #expect(inside.graceEndsAt == since.addingTimeInterval(3 * 24 * 3600))
        let after = Entitlement.evaluate(status: .pastDue, pastDueSince: now.addingTimeInterval(-3 * 24 * 3600), now: now, grace: grace)
        #expect(!after.entitled)
    }
}

@Suite struct PlanChangeDirectionTests {
    @Test func rankDecidesAndMonthToYearIsAnUpgrade() throws {
        let catalog = try defaultCatalog()
        let pro = try catalog.plan(named: "pro"), team = try catalog.plan(named: "team")
        #expect(PlanChangeDirection(from: pro, .month, to: team, .month) == .upgrade)
        #expect(PlanChangeDirection(from: team, .year, to: pro, .year) == .downgrade)
        #expect(PlanChangeDirection(from: team, .month, to: pro, .year) == .downgrade)
        #expect(PlanChangeDirection(from: pro, .month, to: pro, .year) == .upgrade)
        #expect(PlanChangeDirection(from: pro, .year, to: pro, .month) == .downgrade)
        #expect(PlanChangeDirection(from: team, .month, to: team, .month) == .same)
    }
}

@Suite struct MoneyTests {
    @Test func amountsReadAsPeopleWriteThem() {
        #expect(Money(amount: 1900, currency: "usd").formatted == "USD 19.00")
        #expect(Money(amount: 7, currency: "eur").formatted == "EUR 0.07")
        #expect(Money(amount: -1234, currency: "usd").formatted == "USD -12.34")
        #expect(Money(amount: 0, currency: "usd").formatted == "USD 0.00")
        // Minor units as Stripe counts them: whole yen, thousandths of a dinar.
        #expect(Money(amount: 500, currency: "jpy").formatted == "JPY 500")
        #expect(Money(amount: -500, currency: "JPY").formatted == "JPY -500")
        #expect(Money(amount: 1250, currency: "kwd").formatted == "KWD 1.250")
        #expect(Money(amount: 5, currency: "bhd").formatted == "BHD 0.005")
    }

    @Test func stripesMinimumChargeIsPerCurrency() {
        #expect(Money.minimumCharge("usd") == Money(amount: 50, currency: "usd"))
        #expect(Money.minimumCharge("GBP").formatted == "GBP 0.30")
        #expect(Money.minimumCharge("jpy").formatted == "JPY 50")
        #expect(Money.minimumCharge("huf").formatted == "HUF 175.00")
        // A currency Stripe's table does not name: the USD minimum, in its own minor units.
        #expect(Money.minimumCharge("isk") == Money(amount: 50, currency: "isk"))
    }
}
