/// Where a payment's dispute stands, as far as the credits it bought are concerned.
public enum DisputeOutcome: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case none, open, won, lost

    /// The outcome a Stripe dispute `status` means: `won` and `warning_closed` release the credits, `lost` takes them;
    /// any other status is still open, unless the event closes the dispute (`charge.dispute.closed`), which then counts
    /// as won.
    public static func of(stripeStatus status: String, closing: Bool) -> DisputeOutcome {
        switch status {
        case "won", "warning_closed": .won
        case "lost": .lost
        default: closing ? .won : .open
        }
    }

    public var description: String { rawValue }
}

/// The credits a paid top-up gives, and how its refunds and dispute change them.
public enum CreditSettlement {
    /// What a payment event for a top-up does.
    public enum TopUp: Sendable, Equatable {
        /// Credit exactly the credits recorded on the top-up.
        case credit(Int)
        /// Stripe took another amount (or currency): credit nothing, and say why.
        case mismatch(String)
    }

    /// A top-up of `credits` priced at `expected`, for which Stripe took `paid`.
    public static func topUp(credits: Int, expected: Money, paid: Money) -> TopUp {
        guard paid == expected else {
            return .mismatch("Stripe took \(paid.formatted) for a top-up of \(expected.formatted) (\(credits) credits)")
        }
        return .credit(credits)
    }

    /// What the credits a payment bought stand at: taken back for good, and frozen for now.
    public struct Position: Sendable, Equatable {
        public var takenBack: Int
        public var frozen: Int

        public init(takenBack: Int, frozen: Int) {
            self.takenBack = takenBack
            self.frozen = frozen
        }
    }

    /// Why the credits move: the ledger's kind for the entry, and its reason as people read it.
    public enum Kind: String, Sendable, CaseIterable {
        case refund, refundReversal = "refund_reversal", disputeFreeze = "dispute_freeze", disputeRelease = "dispute_release"
        case disputeLoss = "dispute_loss"

        public var reason: String {
            switch self {
            case .refund: "refunded share of the credits"
            case .refundReversal: "given back: a refund failed"
            case .disputeFreeze: "frozen by an open dispute"
            case .disputeRelease: "released: dispute won"
            case .disputeLoss: "taken back: dispute lost"
            }
        }
    }

    /// One move of the credits: to `target`, changing the available balance by `availableChange` and the frozen
    /// credits by `frozenChange`.
    public struct Change: Sendable, Equatable {
        public var kind: Kind
        public var target: Position
        public var availableChange: Int
        public var frozenChange: Int
    }

    /// Brings the `credits` a payment of `amount` bought in line with its refunds and dispute, from where they stand
    /// (`current`):
    /// - the refunded share (rounded up, so refunds never leave a fraction of a credit behind) is taken back, and given
    ///   back if the refund fails;
    /// - an open dispute freezes what remains; a won one releases it; a lost one takes it all back, whatever becomes
    ///   of a refund.
    ///
    /// Nil when nothing moves. The available balance may go negative: a debt that blocks consumption.
    public static func settle(
        credits: Int, amount: Int, refunded: Int, dispute: DisputeOutcome, current: Position
    ) -> Change? {
        guard credits > 0, amount > 0 else { return nil }
        let refundedShare = (credits * min(max(0, refunded), amount) + amount - 1) / amount
        let takenBack = dispute == .lost ? max(current.takenBack, credits) : refundedShare
        let frozen = dispute == .open ? max(0, credits - takenBack) : 0
        let takeBackDelta = takenBack - current.takenBack
        let frozenDelta = frozen - current.frozen
        guard takeBackDelta != 0 || frozenDelta != 0 else { return nil }
        let kind: Kind = switch dispute {
        case .open where frozenDelta != 0: .disputeFreeze
        case .won where frozenDelta != 0: .disputeRelease
        case .lost: .disputeLoss
        default: takeBackDelta < 0 ? .refundReversal : .refund
        }
        return Change(
            kind: kind, target: Position(takenBack: takenBack, frozen: frozen), availableChange: -takeBackDelta - frozenDelta,
            frozenChange: frozenDelta)
    }
}
