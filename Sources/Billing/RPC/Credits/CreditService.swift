import BillingCore
import BillingStore
import Foundation
import JSONRPC

public struct CreditMovementParams: Decodable, Sendable {
    public var amount: Int
    public var reason: String
    public var idempotencyKey: String
}

/// The wallet: what can be spent, what open disputes hold, and what refunds or lost disputes left owing.
public struct CreditBalance: Encodable, Sendable, Equatable {
    public var available: Int
    public var frozen: Int
    /// How far below zero the available balance is (consumption is refused until it is paid off).
    public var debt: Int

    init(available: Int, frozen: Int) {
        self.available = available
        self.frozen = frozen
        debt = max(0, -available)
    }
}

public struct CreditEntry: Encodable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var amount: Int
    public var frozenDelta: Int
    public var balanceAfter: Int
    @OrNull public var reason: String?
    /// What made it: `topup:<id>`, `consume:<key>`, `grant:<key>`, `refund:...`, `dispute_...`.
    public var source: String
    @OrNull public var stripeEventId: String?
    public var createdAt: Date

    init(_ entry: LedgerEntry) {
        id = String(entry.id)
        kind = entry.kind
        amount = entry.amount
        frozenDelta = entry.frozenDelta
        balanceAfter = entry.balanceAfter
        reason = entry.reason
        source = entry.source
        stripeEventId = entry.stripeEventID
        createdAt = entry.createdAt
    }
}

/// `billing.credits`.
/// `billing.credits`'s answer: the balance, and a page of the ledger beside it.
public struct CreditsPage: Encodable, Sendable {
    public var balance: CreditBalance
    public var page: Page<CreditEntry>

    public func encode(to encoder: any Encoder) throws {
        try page.encode(to: encoder)
        var container = encoder.container(keyedBy: Page<CreditEntry>.Key.self)
        try container.encode(balance, forKey: .init(stringValue: "balance"))
    }
}

extension CreditEntry: PageItem {
    public static let listKey = "entries"
}

/// `credits.consume` and `credits.grant`.
public struct CreditMovement: Encodable, Sendable, Equatable {
    public var entryId: String
    /// As the ledger has it: negative for consumption.
    public var amount: Int
    public var balance: CreditBalance
    /// True when this call repeated an earlier one with the same key (nothing moved now).
    public var replayed: Bool
    public var createdAt: Date?
}

extension CreditService {
    static let maxCreditMovement = 1_000_000_000

    func validateMovement(_ params: CreditMovementParams, allowNegative: Bool) throws {
        let range = allowNegative ? -Self.maxCreditMovement...Self.maxCreditMovement : 1...Self.maxCreditMovement
        guard range.contains(params.amount), params.amount != 0 else {
            throw BillingError.invalidParams(
                field: "amount",
                allowNegative
                    ? "amount must be a non-zero whole number of credits between -\(Self.maxCreditMovement) and \(Self.maxCreditMovement) (got \(params.amount))"
                    : "amount must be a whole number of credits from 1 to \(Self.maxCreditMovement) (got \(params.amount))")
        }
        let reason = params.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(reason.count) else {
            throw BillingError.invalidParams(field: "reason", "reason must be 1 to 200 characters saying what the credits are for")
        }
        guard (1...255).contains(params.idempotencyKey.count) else {
            throw BillingError.invalidParams(field: "idempotencyKey", "idempotencyKey must be 1 to 255 characters")
        }
    }

    /// `credits.consume`: debits atomically, once per key; too little available credit is PAYMENT_REQUIRED.
    func consume(_ params: CreditMovementParams, call: TenantCall) async throws -> CreditMovement {
        // Checked before it is negated: -Int.min does not exist (the fuzzer's crash).
        try validateMovement(params, allowNegative: false)
        return try await move(params, call: call, kind: "consumption", signedAmount: -params.amount, action: "credits.consumed", verb: "consuming")
    }

    /// `credits.grant` (operator): adds or removes credits with a reason, once per key, audited.
    func grant(_ params: CreditMovementParams, call: TenantCall) async throws -> CreditMovement {
        try await move(params, call: call, kind: "grant", signedAmount: params.amount, action: "credits.granted", verb: "granting")
    }

    /// One keyed credit movement: a consumption (negative, refused below zero) or a grant (either sign, allowed below
    /// zero), announced and audited when it applies, the first result returned when the key repeats.
    func move(
        _ params: CreditMovementParams, call: TenantCall, kind: String, signedAmount: Int, action: String, verb: String
    ) async throws -> CreditMovement {
        let isConsumption = kind == "consumption"
        try validateMovement(params, allowNegative: !isConsumption)
        let reason = params.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        let actor = call.actor
        let prefix = isConsumption ? "consume" : "grant"
        let result = try await tenants.database.transaction(call.tenantID, operation: "\(prefix) credits") { transaction in
            guard try await transaction.tenantRow.isLive() else { throw Self.unknownTenant(call.tenantID) }
            let result = try await transaction.credits.apply(
                source: "\(prefix):\(params.idempotencyKey)", kind: kind, amount: signedAmount, reason: reason,
                requireBalance: isConsumption)
            if result.outcome == .applied {
                try await notifier.creditsChanged(
                    transaction, available: result.available, frozen: result.frozen, change: signedAmount, kind: kind, reason: reason)
                try await transaction.audit.record(actor: actor, action: action, before: [
                    "available": String(result.available - signedAmount),
                ], after: [
                    "available": String(result.available), "amount": String(params.amount), "reason": reason,
                    "idempotencyKey": params.idempotencyKey,
                ])
            }
            return result
        }
        return try movement(result, requested: signedAmount, reason: reason, key: params.idempotencyKey, verb: verb)
    }

    func movement(_ result: CreditEntryResult, requested: Int, reason: String, key: String, verb: String) throws -> CreditMovement {
        let balance = CreditBalance(available: result.available, frozen: result.frozen)
        switch result.outcome {
        case .insufficient:
            throw BillingError.paymentRequired(
                "not enough credits: \(balance.available) available\(balance.frozen > 0 ? " (\(balance.frozen) frozen by a dispute)" : ""), \(-requested) requested; top up with billing.topUp",
                data: ["available": .integer(balance.available), "frozen": .integer(balance.frozen), "debt": .integer(balance.debt),
                       "requested": .integer(-requested)])
        case .replayed:
            guard result.amount == requested, result.reason == reason else {
                throw BillingError.conflict(
                    "idempotencyKey '\(key)' was used for \(verb) \(abs(result.amount)) credits ('\(result.reason ?? "")'); use a new key for another movement",
                    data: ["amount": .integer(abs(result.amount)), "reason": .string(result.reason ?? ""),
                           "entryId": .string(result.entryID.map(String.init) ?? "")])
            }
            return CreditMovement(
                entryId: result.entryID.map(String.init) ?? "", amount: result.amount, balance: balance, replayed: true,
                createdAt: result.createdAt)
        case .applied:
            return CreditMovement(
                entryId: result.entryID.map(String.init) ?? "", amount: result.amount, balance: balance, replayed: false,
                createdAt: result.createdAt)
        }
    }

    /// `billing.credits`: the balance and the ledger, newest first, by cursor.
    func credits(_ params: PageParams, call: TenantCall) async throws -> CreditsPage {
        let limit = try params.validatedLimit()
        let before = try Self.entryCursor(params.cursor, method: "billing.credits")
        return try await tenants.database.transaction(call.tenantID, operation: "read credits", readOnly: true) { transaction in
            try await requireReadable(transaction, call)
            let balance = try await transaction.credits.balance()
            let page = Self.page(try await transaction.credits.ledger(before: before, limit: limit + 1), limit: limit) { String($0.id) }
            return CreditsPage(
                balance: CreditBalance(available: balance.available, frozen: balance.frozen), page: Page(items: page.rows.map(CreditEntry.init), nextCursor: page.next))
        }
    }
}
