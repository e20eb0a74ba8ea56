import BillingStore
import Foundation
import StripeAPI

/// How the first phase of a method that calls Stripe ended.
enum PhaseOne<Plan: Codable & Sendable, Result: Sendable>: Sendable {
    /// Nothing to ask Stripe: the answer.
    case answered(Result)
    /// Ask Stripe as `plan` says. `request` tells a repeat of the same request (a double click) from another one.
    case call(request: String, plan: Plan)
}

/// Where the first phase leaves a request: answered, to send (a new intent, or a repeat of one), or held up by an
/// older intent to settle first.
enum IntentStep<Plan: Sendable, Result: Sendable>: Sendable {
    case answered(Result)
    case send(StripeIntent, Plan)
    case settle(StripeIntent)
}

/// What an intent changes, and whether another one may be started for it meanwhile.
struct IntentSubject: Sendable {
    var name: String
    /// At most one started intent per tenant and subject: changes to one subscription must not overtake each other,
    /// and two plan checkouts must not both become payable.
    var exclusive: Bool

    static let subscription = IntentSubject(name: "subscription", exclusive: true)
    static let checkout = IntentSubject(name: "checkout", exclusive: true)
    static let topUp = IntentSubject(name: "top_up", exclusive: false)
    static let setup = IntentSubject(name: "setup", exclusive: false)
    static let refund = IntentSubject(name: "refund", exclusive: false)
    static let invoice = IntentSubject(name: "invoice", exclusive: false)
    static let tenant = IntentSubject(name: "tenant", exclusive: true)
}

/// Stripe keeps an idempotency key for 24 hours: an intent older than this is settled by reading Stripe, never by
/// re-sending its key (which Stripe may no longer know, and would then execute again).
let intentKeyLifetime: TimeInterval = 23 * 3600
/// An exclusive intent younger than this may still be in flight (the Stripe client's timeouts and retries included):
/// another change waits for it. Older, its request died with its process, and it is settled by reading Stripe.
let intentInFlight: TimeInterval = 120

extension BillingService {
    /// Stripe's "atomic phases" for a method that calls Stripe:
    /// 1. `decide` checks the request in a short transaction holding the tenant's row lock, and the intent is recorded
    ///    there (a new one takes a token of `limit`, the tenant's rate limit for its class);
    /// 2. `call` asks Stripe with no transaction or lock held, under keys derived from the intent;
    /// 3. `record` writes the outcome in a second short transaction (`recorded`: a repeat got there first, so only the
    ///    answer is wanted).
    ///
    /// A repeat of the same request while its intent is started re-sends the intent's plan under its keys, so Stripe
    /// answers with the first result. A different request for an exclusive subject waits while the started intent may
    /// still be in flight (CONFLICT with `retryAfter`); after that, and for any intent older than Stripe keeps keys,
    /// `settle` reads Stripe, records what it finds, and the request starts afresh. An answer from Stripe that refuses
    /// the request (or a refusal of ours on reading it) ends the intent as `failed`; no answer (a timeout, a 5xx)
    /// leaves it started, for the repeat.
    func inAtomicPhases<Plan: Codable & Sendable, Answer: Sendable, Result: Sendable>(
        _ tenant: UUID, _ subject: IntentSubject, operation: String, limit: RateLimits.Limit? = nil,
        includingDeleted: Bool = false, exclusiveLock: Bool = false,
        decide: @escaping @Sendable (TenantTransaction) async throws -> PhaseOne<Plan, Result>,
        call: @escaping @Sendable (Plan, StripeIntent) async throws -> Answer,
        record: @escaping @Sendable (TenantTransaction, Plan, StripeIntent, Answer, _ recorded: Bool) async throws -> Result,
        settle: @escaping @Sendable (StripeIntent) async throws -> Void
    ) async throws -> Result {
        for _ in 0..<3 {
            let now = now()
            let step = try await tenants.database.transaction(tenant, operation: operation) { transaction -> IntentStep<Plan, Result> in
                try await lockTenant(transaction, includingDeleted: includingDeleted, exclusive: exclusiveLock)
                let (request, plan): (String, Plan)
                switch try await decide(transaction) {
                case .answered(let result): return .answered(result)
                case .call(let asked, let planned): (request, plan) = (asked, planned)
                }
                let started = try await transaction.intents.started(
                    subject: subject.name, request: subject.exclusive ? nil : request)
                if let open = started.first {
                    let age = now.timeIntervalSince(open.createdAt)
                    if open.operation == operation, open.request == request, age < intentKeyLifetime,
                       let first = try? JSONDecoder().decode(Plan.self, from: Data(open.plan.utf8))
                    {
                        return .send(open, first)
                    }
                    if age < intentInFlight {
                        let wait = max(1, Int((intentInFlight - age).rounded(.up)))
                        throw BillingError.conflict(
                            "another change to this tenant's \(subject.name) (\(open.operation)) is still waiting for Stripe; try again in \(wait) s",
                            data: ["retryAfter": .integer(wait)])
                    }
                    return .settle(open)
                }
                if let limit, let wait = try await transaction.tenantRow.takeRateToken(limit.name, perMinute: limit.perMinute, burst: limit.burst, now: now) {
                    throw Self.rateLimited(limit, method: operation, wait: wait)
                }
                let intent = try await transaction.intents.start(
                    id: newID(), subject: subject.name, operation: operation, request: request, exclusive: subject.exclusive,
                    plan: String(decoding: try JSONEncoder().encode(plan), as: UTF8.self), now: now)
                return .send(intent, plan)
            }
            switch step {
            case .answered(let result):
                return result
            case .settle(let open):
                try await settle(open)
                continue
            case .send(let intent, let plan):
                let answer: Answer
                do {
                    answer = try await call(plan, intent)
                } catch StripeError.refused(let refusal) where refusal.httpStatus == 409 && refusal.code == "idempotency_key_in_use" {
                    // The same key in flight (the first click's call still running): nothing failed.
                    throw BillingError.conflict(
                        "this request is still being made at Stripe; try again in a moment", data: ["retryAfter": .integer(1)])
                } catch let error where Self.isAnswered(error) {
                    try await finish(intent, tenant: tenant, as: "failed", because: String(describing: error))
                    throw error
                }
                do {
                    return try await tenants.database.transaction(tenant, operation: operation) { transaction in
                        try await lockTenant(transaction, includingDeleted: includingDeleted, exclusive: exclusiveLock)
                        // A repeat that got there first recorded it; one settled meanwhile (its process thought dead)
                        // recorded nothing, so this answer is still to be written.
                        let recorded = try await transaction.intents.lock(intent.id) == "succeeded"
                        let result = try await record(transaction, plan, intent, answer, recorded)
                        if !recorded {
                            try await transaction.intents.finish(intent.id, status: "succeeded", outcome: nil, now: self.now())
                        }
                        return result
                    }
                } catch let error as BillingError {
                    // What Stripe did cannot be recorded as asked (the tenant moved on meanwhile): the intent is over, and
                    // a repeat starts afresh instead of re-sending into the same refusal.
                    try await finish(intent, tenant: tenant, as: "failed", because: String(describing: error))
                    throw error
                }
            }
        }
        throw BillingError.conflict("this tenant's \(subject.name) changed while the request was being made; try again")
    }

    /// Whether `error` from the Stripe phase is an answer (Stripe refused the request, or we refused what it said), so
    /// the intent is over; anything else (no answer, a timeout, a 5xx, an unreadable body) may have been executed, and
    /// leaves the intent for a repeat to re-send.
    static func isAnswered(_ error: Error) -> Bool {
        switch error {
        case StripeError.refused(let refusal): refusal.httpStatus != 429 && refusal.httpStatus < 500
        case is BillingError: true
        default: false
        }
    }

    /// The tenant's row lock, the first thing each phase takes. `exclusive` (a deletion): the strongest lock from the
    /// start, since raising a lock held alongside other transactions' foreign-key locks deadlocks.
    func lockTenant(_ transaction: TenantTransaction, includingDeleted: Bool, exclusive: Bool = false) async throws {
        if includingDeleted {
            guard try await transaction.tenantRow.lockIncludingDeleted(exclusive: exclusive) != nil else { throw Self.unknownTenant(transaction.tenant) }
        } else {
            _ = try await lockedTenant(transaction)
        }
    }

    /// Ends an intent that was refused, or settled by reading Stripe (`abandoned`).
    func finish(_ intent: StripeIntent, tenant: UUID, as status: String, because note: String) async throws {
        let now = now()
        try await tenants.database.transaction(tenant, operation: "settle intent") { transaction in
            try await transaction.intents.finish(intent.id, status: status, outcome: note, now: now)
        }
    }

    static func rateLimited(_ limit: RateLimits.Limit, method: String, wait: Duration) -> BillingError {
        let seconds = max(1, Int((wait / .seconds(1)).rounded(.up)))
        return BillingError.tooManyRequests(
            "\(method) is limited to \(limit.perMinute) calls a minute per tenant (with the others of its class); try again in \(seconds) s",
            retryAfter: wait)
    }
}
