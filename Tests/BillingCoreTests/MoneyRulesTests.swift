import BillingCore
import Testing

/// Credits applied to an invoice this server issues, as a table: whole credits first, never below Stripe's minimum
/// charge, nothing from a debt.
@Suite struct InvoiceTotalsTests {
    @Test(arguments: [
        // available, worth, subtotal, currency, credits applied, amount due
        (0, 1, 7500, "usd", 0, 7500),  // no credits: the card pays it all
        (10_000, 1, 7500, "usd", 7500, 0),  // covered whole: paid at issue
        (7480, 1, 7500, "usd", 7450, 50),  // 20 cents left would be below USD 0.50: the card pays the minimum
        (7450, 1, 7500, "usd", 7450, 50),  // exactly the minimum left
        (7000, 1, 7500, "usd", 7000, 500),
        (-300, 1, 7500, "usd", 0, 7500),  // a debt applies nothing
        (100, 25, 7510, "usd", 100, 5010),  // credits worth 25 cents each
        (1000, 25, 7510, "usd", 298, 60),  // 300 credits would leave 10 cents: 298 leave 60
        (1000, 100, 7530, "usd", 74, 130),  // whole credits only: 75 would leave 30 cents, below the minimum
        (7500, 1, 7520, "gbp", 7490, 30),  // GBP's minimum is 30 pence: 20 pence would be too little
        (10_000, 1, 40, "usd", 40, 0),  // a subtotal below the minimum, covered whole
        (30, 1, 40, "usd", 0, 40),  // ... or not touched, since any remainder would be below the minimum
        (500, 1, 0, "usd", 0, 0),  // nothing to pay
    ] as [(Int, Int, Int, String, Int, Int)])
    func creditsThenCard(available: Int, worth: Int, subtotal: Int, currency: String, credits: Int, due: Int) {
        let totals = InvoiceTotals.applying(availableCredits: available, worth: worth, to: subtotal, currency: currency)
        #expect(totals.creditsApplied == credits)
        #expect(totals.amountDue == due)
        #expect(totals.creditAmount == credits * worth)
        #expect(totals.creditAmount + totals.amountDue == subtotal)
        #expect(totals.isPaidByCredits == (due == 0))
        #expect(totals.amountDue == 0 || totals.amountDue >= min(subtotal, Money.minimumCharge(currency).amount))
    }

    @Test func uncreditedChargesTheWholeSubtotal() {
        #expect(InvoiceTotals.uncredited(1234) == InvoiceTotals(subtotal: 1234, creditsApplied: 0, creditAmount: 0, amountDue: 1234))
    }
}

/// The credits a top-up bought, through its refunds and disputes, as a table.
@Suite struct CreditSettlementTests {
    typealias Position = CreditSettlement.Position

    @Test(arguments: [
        // credits, amount, refunded, dispute, (taken back, frozen) before, kind, (taken back, frozen) after, available change
        (1000, 1000, 0, DisputeOutcome.none, Position(takenBack: 0, frozen: 0), nil, nil, 0),  // nothing to do
        (1000, 1000, 250, .none, Position(takenBack: 0, frozen: 0), CreditSettlement.Kind.refund, Position(takenBack: 250, frozen: 0), -250),
        (1000, 1000, 1000, .none, Position(takenBack: 250, frozen: 0), .refund, Position(takenBack: 1000, frozen: 0), -750),
        (1000, 1000, 2000, .none, Position(takenBack: 0, frozen: 0), .refund, Position(takenBack: 1000, frozen: 0), -1000),  // capped
        (3, 1000, 1, .none, Position(takenBack: 0, frozen: 0), .refund, Position(takenBack: 1, frozen: 0), -1),  // rounded up
        (1000, 1000, 0, .none, Position(takenBack: 250, frozen: 0), .refundReversal, Position(takenBack: 0, frozen: 0), 250),  // a refund failed
        (1000, 1000, 0, .open, Position(takenBack: 0, frozen: 0), .disputeFreeze, Position(takenBack: 0, frozen: 1000), -1000),
        (1000, 1000, 400, .open, Position(takenBack: 400, frozen: 0), .disputeFreeze, Position(takenBack: 400, frozen: 600), -600),
        (1000, 1000, 0, .won, Position(takenBack: 0, frozen: 1000), .disputeRelease, Position(takenBack: 0, frozen: 0), 1000),
        (1000, 1000, 0, .lost, Position(takenBack: 0, frozen: 1000), .disputeLoss, Position(takenBack: 1000, frozen: 0), 0),
        (1000, 1000, 0, .lost, Position(takenBack: 0, frozen: 0), .disputeLoss, Position(takenBack: 1000, frozen: 0), -1000),
        (1000, 1000, 0, .lost, Position(takenBack: 1000, frozen: 0), nil, nil, 0),  // lost is final: nothing more
        (0, 1000, 500, .open, Position(takenBack: 0, frozen: 0), nil, nil, 0),  // a payment that bought no credits
    ] as [(Int, Int, Int, DisputeOutcome, Position, CreditSettlement.Kind?, Position?, Int)])
    func refundsAndDisputes(
        credits: Int, amount: Int, refunded: Int, dispute: DisputeOutcome, before: Position, kind: CreditSettlement.Kind?,
        after: Position?, availableChange: Int
    ) {
        let change = CreditSettlement.settle(credits: credits, amount: amount, refunded: refunded, dispute: dispute, current: before)
        #expect(change?.kind == kind)
        #expect(change?.target == after)
        #expect((change?.availableChange ?? 0) == availableChange)
        if let change {
            #expect(change.frozenChange == change.target.frozen - before.frozen)
            #expect(change.availableChange == -(change.target.takenBack - before.takenBack) - change.frozenChange)
        }
    }

    @Test func aLostDisputeKeepsWhatARefundTookAlready() {
        let change = CreditSettlement.settle(
            credits: 1000, amount: 1000, refunded: 0, dispute: .lost, current: Position(takenBack: 1000, frozen: 0))
        #expect(change == nil)
    }

    @Test(arguments: [
        (1000, "usd", 1000, "USD", CreditSettlement.TopUp.credit(100)),
        (1000, "usd", 900, "usd", .mismatch("Stripe took USD 9.00 for a top-up of USD 10.00 (100 credits)")),
        (1000, "usd", 1000, "eur", .mismatch("Stripe took EUR 10.00 for a top-up of USD 10.00 (100 credits)")),
    ])
    func aTopUpIsCreditedOnlyForItsPrice(expected: Int, currency: String, paid: Int, paidCurrency: String, outcome: CreditSettlement.TopUp) {
        let result = CreditSettlement.topUp(
            credits: 100, expected: Money(amount: expected, currency: currency), paid: Money(amount: paid, currency: paidCurrency))
        #expect(result == outcome)
    }

    @Test(arguments: [
        ("needs_response", false, DisputeOutcome.open), ("under_review", false, .open), ("warning_needs_response", false, .open),
        ("won", false, .won), ("warning_closed", false, .won), ("lost", false, .lost), ("under_review", true, .won),
        ("lost", true, .lost),
    ])
    func whatADisputeStatusMeans(status: String, closing: Bool, outcome: DisputeOutcome) {
        #expect(DisputeOutcome.of(stripeStatus: status, closing: closing) == outcome)
    }
}
