import BillingCore
import BillingStore
import Foundation
import StripeAPI

/// A change to a Stripe subscription as its first phase decided it, kept with its intent: the schedule to release
/// first (a change made here replaces whatever a schedule had planned), then the updates, in order, each with the
/// audit action its confirmation is recorded under.
struct SubscriptionChangePlan: Codable, Sendable {
    var subscription: String
    /// The row as the first phase saw it (`stamp`): the last phase records Stripe's answers only over that same row.
    var seen: String = ""
    var releasing: String?
    var steps: [Step]
    /// What a plan change writes once its steps are confirmed.
    var effect: Effect? = nil

    enum Effect: Codable, Sendable, Equatable {
        /// The move waits for the period's end (a downgrade, or leaving for free).
        case schedule(plan: String, interval: String?)
        /// Back to what it is: a scheduled change is dropped.
        case drop
        /// An upgrade: applied, or waiting for its invoice to be paid.
        case upgraded
    }

    struct Step: Codable, Sendable {
        enum Kind: String, Codable, Sendable {
            /// The item's quantity (`seats`); `charging`: invoiced now, applied once paid.
            case seats
            /// The item's price and quantity, invoiced now (an upgrade).
            case price
            /// The item's price and quantity without proration: a downgrade at the period's end, which the renewal
            /// bills.
            case priceAtRenewal
            /// `cancel_at_period_end` set to `value`.
            case cancelAtPeriodEnd
            /// Whatever ending is scheduled at Stripe then (the flag or a `cancel_at`) is cleared.
            case clearEnding
            /// Canceled at once.
            case end
        }

        var kind: Kind
        var action: String
        var seats: Int? = nil
        var price: String? = nil
        var charging: Bool = false
        var value: Bool = false
    }

    var callsStripe: Bool { releasing != nil || !steps.isEmpty }
}

/// Stripe's confirmations of a change's steps, in order.
struct ConfirmedChange: Sendable {
    var confirmations: [(action: String, subscription: Subscription)] = []
    var last: Subscription? { confirmations.last?.subscription }
}

extension BillingService {
    /// A change to the tenant's live subscription in atomic phases (`inAtomicPhases`, one change per tenant at a time):
    /// `decide` checks it against the subscription as it is, locked, and plans the Stripe steps (or makes a change
    /// that needs none there and returns no plan); the steps run with no lock held, each under a key of the intent;
    /// their confirmations are recorded, then `effects` writes what follows from the last one (pending changes,
    /// audit) and returns a subscription whose upgrade waits for payment, if any.
    func changeSubscription(
        _ call: TenantCall, operation: String, request: String, for action: String,
        decide: @escaping @Sendable (TenantTransaction, SubscriptionRecord) async throws -> SubscriptionChangePlan?,
        effects: @escaping @Sendable (TenantTransaction, SubscriptionRecord, SubscriptionChangePlan, _ confirmed: Subscription?) async throws -> SubscriptionRecord? = { _, _, _, _ in nil }
    ) async throws -> SubscriptionRecord? {
        let client = try requireStripe()
        let actor = call.actor
        return try await inAtomicPhases(
            call.tenantID, .subscription, operation: operation,
            decide: { transaction -> PhaseOne<SubscriptionChangePlan, SubscriptionRecord?> in
                let current = try await liveSubscription(transaction, for: action)
                guard var plan = try await decide(transaction, current) else { return .answered(nil) }
                guard plan.callsStripe else { return .answered(try await effects(transaction, current, plan, nil)) }
                plan.seen = Self.stamp(current)
                return .call(request: request, plan: plan)
            },
            call: { plan, intent in try await self.run(plan, intent: intent, client: client) },
            record: { transaction, plan, _, confirmed, recorded in
                if !recorded {
                    try await self.record(confirmed, over: plan, transaction, actor: actor)
                }
                guard let current = try await transaction.subscriptions.lock(plan.subscription) else { return nil }
                return recorded ? nil : try await effects(transaction, current, plan, confirmed.last)
            },
            settle: { intent in try await self.settleSubscriptionIntent(intent, tenant: call.tenantID, client: client) })
    }

    /// The Stripe phase: each step under its own key of the intent, so a repeat is answered as the first was.
    func run(_ plan: SubscriptionChangePlan, intent: StripeIntent, client: StripeClient) async throws -> ConfirmedChange {
        var confirmed = ConfirmedChange()
        var latest: Subscription?
        if let schedule = plan.releasing {
            try await client.releaseScheduleInForce(schedule)
            let released = try await client.retrieveSubscription(plan.subscription)
            confirmed.confirmations.append(("subscription.schedule_released", released))
            latest = released
        }
        for (index, step) in plan.steps.enumerated() {
            let key = intent.key("step\(index)")
            let form: FormParameters
            switch step.kind {
            case .seats:
                let item = try await subscriptionItem(plan.subscription, client: client)
                form = Self.itemChange(
                    ["id": .string(item), "quantity": .int(step.seats ?? 1)], charging: step.charging, otherwise: settings.seatProration)
            case .price:
                let item = try await subscriptionItem(plan.subscription, client: client)
                form = Self.itemChange(
                    ["id": .string(item), "price": .string(step.price ?? ""), "quantity": .int(step.seats ?? 1)],
                    charging: true, otherwise: settings.seatProration)
            case .priceAtRenewal:
                let item = try await subscriptionItem(plan.subscription, client: client)
                form = [
                    "items": [["id": .string(item), "price": .string(step.price ?? ""), "quantity": .int(step.seats ?? 1)]],
                    "proration_behavior": "none",
                ]
            case .cancelAtPeriodEnd:
                form = ["cancel_at_period_end": .bool(step.value)]
            case .clearEnding:
                var now = latest
                if now == nil { now = try await client.retrieveSubscription(plan.subscription) }
                if now?.cancelAtPeriodEnd == true {
                    form = ["cancel_at_period_end": false]
                } else if now?.cancelAt != nil {
                    form = ["cancel_at": ""]
                } else {
                    continue
                }
            case .end:
                let ended = try await client.endSubscription(plan.subscription)
                confirmed.confirmations.append((step.action, ended))
                latest = ended
                continue
            }
            let updated = try await client.updateSubscription(plan.subscription, form, idempotencyKey: key)
            confirmed.confirmations.append((step.action, updated))
            latest = updated
        }
        return confirmed
    }

    /// Records Stripe's confirmations as the subscription's row, when the row is as the first phase saw it. A row that
    /// moved meanwhile was written by an event this server cannot order against the answers; the change's own events,
    /// which always follow, bring it up to date instead.
    func record(_ confirmed: ConfirmedChange, over plan: SubscriptionChangePlan, _ transaction: TenantTransaction, actor: AuditActor) async throws {
        guard let row = try await transaction.subscriptions.lock(plan.subscription), Self.stamp(row) == plan.seen else {
            for (action, subscription) in confirmed.confirmations {
                try await transaction.audit.record(
                    actor: actor, action: action, before: nil, after: ["subscription": subscription.id, "recordedBy": "its webhook"])
            }
            return
        }
        for (action, subscription) in confirmed.confirmations {
            guard let current = try await transaction.subscriptions.lock(subscription.id) else { continue }
            try await applyConfirmed(subscription, over: current, transaction, actor: actor, action: action)
        }
    }

    /// A subscription change whose process died after its intent was recorded (or that is older than Stripe keeps
    /// keys): the subscription is read from Stripe and recorded as it is, and the intent ends, so the next change
    /// starts from Stripe's truth.
    func settleSubscriptionIntent(_ intent: StripeIntent, tenant: UUID, client: StripeClient) async throws {
        if let plan = try? JSONDecoder().decode(SubscriptionChangePlan.self, from: Data(intent.plan.utf8)) {
            let subscription = try await client.retrieveSubscription(plan.subscription)
            try await tenants.database.transaction(tenant, operation: "settle intent") { transaction in
                if let current = try await transaction.subscriptions.lock(subscription.id) {
                    try await applyConfirmed(
                        subscription, over: current, transaction, actor: AuditActor(kind: .system, id: "intent"), action: "subscription.settled")
                }
            }
        }
        try await finish(intent, tenant: tenant, as: "abandoned", because: "settled: the subscription was read from Stripe")
    }
}
