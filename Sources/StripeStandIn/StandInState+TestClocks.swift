import BillingCore
import Foundation
import StripeAPI

/// Test clocks (`/v1/test_helpers/test_clocks`), as Stripe runs them. A customer made on a clock lives in its time:
/// what is made for it is dated by the clock. Advancing the clock runs, moment by moment in order, what Stripe does
/// for that customer's subscriptions as time passes:
/// - three days before a trial ends, `customer.subscription.trial_will_end`;
/// - at a period's end: a scheduled ending (`cancel_at`, `cancel_at_period_end`), a schedule's next phase, or the
///   renewal, with its invoice drafted then and finalized and charged an hour later;
/// - a failed charge makes the subscription `past_due` and is retried `retryDays` apart; after the last failure the
///   subscription is canceled, marked `unpaid` or left `past_due`, as the account's settings say;
/// - a `pending_update` that was never paid lapses at its `expires_at`.
extension StandInState {
    static let clockKind = "test_helpers.test_clock"

    // MARK: Endpoints

    /// `POST /v1/test_helpers/test_clocks`.
    func createTestClock(_ params: [String: Any]) -> StandInResponse {
        guard let frozen = Int(params["frozen_time"] as? String ?? "") else {
            return Self.missing("frozen_time", "a Unix time")
        }
        var clock = template(Self.clockKind)
        let id = newID("clock")
        clock["id"] = id
        clock["created"] = wallNow
        // Stripe deletes a clock, and everything made on it, 30 days after it was created.
        clock["deletes_after"] = wallNow + 30 * 86400
        clock["frozen_time"] = frozen
        clock["name"] = params["name"] as? String ?? NSNull()
        clock["status"] = "ready"
        clock["status_details"] = [:] as [String: Any]
        clock["livemode"] = false
        objects[id] = clock
        emit("test_helpers.test_clock.created", clock)
        return Self.json(clock)
    }

    /// `DELETE /v1/test_helpers/test_clocks/:id`: the clock goes, and with it its customers and all that is theirs.
    func deleteTestClock(_ id: String) -> StandInResponse {
        guard var clock = objects[id], clock["object"] as? String == Self.clockKind else { return retrieve(id, kind: Self.clockKind) }
        let customers = customers(on: id)
        objects = objects.filter { key, object in
            key != id && !customers.contains(key) && !customers.contains(object["customer"] as? String ?? "")
        }
        clock["deleted"] = true
        emit("test_helpers.test_clock.deleted", clock)
        return Self.json(["id": id, "object": Self.clockKind, "deleted": true])
    }

    /// `POST /v1/test_helpers/test_clocks/:id/advance`: answered at once with the clock `advancing`; it is `ready`,
    /// at `frozen_time`, once everything due meanwhile has happened (`test_helpers.test_clock.ready`).
    func advanceTestClock(_ id: String, _ params: [String: Any]) -> StandInResponse {
        guard var clock = objects[id], clock["object"] as? String == Self.clockKind else { return retrieve(id, kind: Self.clockKind) }
        guard let target = Int(params["frozen_time"] as? String ?? "") else {
            return Self.missing("frozen_time", "a Unix time")
        }
        guard clock["status"] as? String == "ready" else {
            return Self.error(400, type: "invalid_request_error",
                              message: "Test clock \(id) is \(clock["status"] as? String ?? "busy"); wait until its status is ready before advancing it again.")
        }
        let current = clock["frozen_time"] as? Int ?? 0
        guard target > current else {
            return Self.error(400, type: "invalid_request_error", code: "parameter_invalid_integer", param: "frozen_time",
                              message: "The frozen_time (\(target)) must be after the test clock's current frozen_time (\(current)).")
        }
        if let limit = advanceLimit(id, from: current), target > limit {
            return Self.error(400, type: "invalid_request_error", code: "parameter_invalid_integer", param: "frozen_time",
                              message: "A test clock advances at most two intervals of the shortest subscription on it at a time: frozen_time may be at most \(limit).")
        }
        clock["status"] = "advancing"
        clock["status_details"] = ["advancing": ["target_frozen_time": target]]
        objects[id] = clock
        emit("test_helpers.test_clock.advancing", clock)
        Task { self.run(clock: id, to: target) }
        return Self.json(clock)
    }

    // MARK: Scope

    /// Customers made on the clock.
    func customers(on clock: String) -> Set<String> {
        Set(objects.compactMap { id, object in
            object["object"] as? String == "customer" && object["test_clock"] as? String == clock ? id : nil
        })
    }

    /// The clock whose time a request runs in: the one a customer is made on, or the clock of the customer that the
    /// objects the request names (in its path, or as `customer`, `charge`, `payment_intent`) belong to.
    func clock(for params: [String: Any], path segments: [String]) -> String? {
        if let clock = params["test_clock"] as? String { return clock }
        let named = segments + ["customer", "charge", "payment_intent", "subscription"].compactMap { params[$0] as? String }
        return named.lazy.compactMap { self.clock(of: $0) }.first
    }

    /// The clock of an object: a clock itself, a customer's, or its customer's.
    func clock(of id: String?) -> String? {
        guard let id, let object = objects[id] else { return nil }
        switch object["object"] as? String {
        case Self.clockKind?: return id
        case "customer"?: return object["test_clock"] as? String
        default: return (object["customer"] as? String).flatMap { objects[$0]?["test_clock"] as? String }
        }
    }

    /// Runs `body` in the time of `object`'s clock, if it has one.
    func onClock<T>(of object: String?, _ body: () -> T) -> T {
        let outer = clockInScope
        clockInScope = clock(of: object) ?? outer
        defer { clockInScope = outer }
        return body()
    }

    /// How far a clock may go from `current`: two intervals of the shortest live subscription on it; nil without one.
    func advanceLimit(_ clock: String, from current: Int) -> Int? {
        let customers = customers(on: clock)
        return objects.values
            .filter { $0["object"] as? String == "subscription" && customers.contains($0["customer"] as? String ?? "") && !Self.ended($0) }
            .compactMap { interval(of: $0) }
            .map { Self.periodEnd(from: Self.periodEnd(from: current, interval: $0), interval: $0) }
            .min()
    }

    // MARK: Simulation

    /// What happens next on a clock, in the order Stripe takes things that fall due at one moment.
    enum ClockStep: Comparable {
        case trialWillEnd(String)
        case pendingUpdateExpires(String)
        case cancel(String)
        case periodEnds(String)
        case finalize(String)
        case retry(String)
    }

    func run(clock id: String, to target: Int) {
        let outer = clockInScope
        clockInScope = id
        defer { clockInScope = outer }
        while let (moment, step) = nextStep(on: id, until: target) {
            objects[id]?["frozen_time"] = moment
            switch step {
            case .trialWillEnd(let subscription):
                objects[subscription]?["_trial_will_end_sent"] = true
                emit("customer.subscription.trial_will_end", objects[subscription]!)
            case .pendingUpdateExpires(let subscription):
                objects[subscription]?["pending_update"] = NSNull()
                emit("customer.subscription.pending_update_expired", objects[subscription]!)
            case .cancel(let subscription):
                end(subscription, reason: "cancellation_requested")
            case .periodEnds(let subscription):
                renew(subscription)
            case .finalize(let invoice):
                finalize(invoice)
            case .retry(let invoice):
                collectRenewal(invoice)
            }
        }
        guard var clock = objects[id] else { return }
        clock["frozen_time"] = target
        clock["status"] = "ready"
        clock["status_details"] = [:] as [String: Any]
        objects[id] = clock
        emit("test_helpers.test_clock.ready", clock)
    }

    func nextStep(on clock: String, until target: Int) -> (Int, ClockStep)? {
        let customers = customers(on: clock)
        var due: [(Int, ClockStep)] = []
        for (id, object) in objects where customers.contains(object["customer"] as? String ?? "") {
            switch object["object"] as? String {
            case "subscription" where !Self.ended(object):
                if object["status"] as? String == "trialing", object["_trial_will_end_sent"] == nil, let end = object["trial_end"] as? Int {
                    due.append((end - 3 * 86400, .trialWillEnd(id)))
                }
                if let expires = (object["pending_update"] as? [String: Any])?["expires_at"] as? Int {
                    due.append((expires, .pendingUpdateExpires(id)))
                }
                if let cancelAt = object["cancel_at"] as? Int { due.append((cancelAt, .cancel(id))) }
                if let end = periodEnd(of: object) { due.append((end, .periodEnds(id))) }
            case "invoice":
                if object["status"] as? String == "draft", let at = object["_finalize_at"] as? Int { due.append((at, .finalize(id))) }
                if object["status"] as? String == "open", let at = object["next_payment_attempt"] as? Int { due.append((at, .retry(id))) }
            default:
                continue
            }
        }
        return due.filter { $0.0 <= target }.min { ($0.0, $0.1) < ($1.0, $1.1) }
    }

    static func ended(_ subscription: [String: Any]) -> Bool {
        SubscriptionStatus.isTerminal(subscription["status"] as? String ?? "")
    }

    func interval(of subscription: [String: Any]) -> String? {
        let item = ((subscription["items"] as? [String: Any])?["data"] as? [[String: Any]])?.first
        return ((item?["price"] as? [String: Any])?["recurring"] as? [String: Any])?["interval"] as? String
    }

    /// One interval on from `start`, by the calendar (in UTC), as Stripe bills: Jan 31 + 1 month is Feb 28 (or 29).
    static func periodEnd(from start: Int, interval: String) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let component: Calendar.Component = switch interval {
        case "day": .day
        case "week": .weekOfYear
        case "year": .year
        default: .month
        }
        let date = calendar.date(byAdding: component, value: 1, to: Date(timeIntervalSince1970: TimeInterval(start)))!
        return Int(date.timeIntervalSince1970)
    }

    /// The subscription ends now.
    func end(_ id: String, reason: String) {
        guard var subscription = objects[id] else { return }
        subscription["status"] = "canceled"
        if subscription["canceled_at"] is NSNull || subscription["canceled_at"] == nil { subscription["canceled_at"] = now }
        subscription["ended_at"] = now
        subscription["cancellation_details"] = ["reason": reason, "comment": NSNull(), "feedback": NSNull()] as [String: Any]
        objects[id] = subscription
        emit("customer.subscription.deleted", subscription)
    }

    /// A period ends: a schedule's next phase starts (or the schedule, out of phases, is released), the subscription
    /// renews (a trial becomes active), and the new period's invoice is drafted, to be finalized in an hour.
    func renew(_ id: String) {
        advanceSchedule(of: id)
        guard var subscription = objects[id] else { return }
        var items = (subscription["items"] as? [String: Any])?["data"] as? [[String: Any]] ?? []
        let previousStart = items.first?["current_period_start"] as? Int ?? now
        let end = Self.periodEnd(from: now, interval: interval(of: subscription) ?? "month")
        for index in items.indices {
            items[index]["current_period_start"] = now
            items[index]["current_period_end"] = end
        }
        subscription["items"] = list(items, url: "/v1/subscription_items?subscription=\(id)")
        if subscription["status"] as? String == "trialing" { subscription["status"] = "active" }
        let amount = items.reduce(0) { $0 + (($1["price"] as? [String: Any])?["unit_amount"] as? Int ?? 0) * ($1["quantity"] as? Int ?? 1) }
        var invoice = subscriptionInvoice(amount, subscription: subscription, reason: "subscription_cycle")
        invoice["status"] = "draft"
        invoice["number"] = NSNull()
        invoice["period_start"] = previousStart
        invoice["period_end"] = now
        // Stripe finalizes a renewal's invoice about an hour after drafting it, and then charges it.
        invoice["_finalize_at"] = now + 3600
        objects[invoice["id"] as! String] = invoice
        subscription["latest_invoice"] = invoice["id"]
        objects[id] = subscription
        emit("customer.subscription.updated", subscription)
        emit("invoice.created", invoice)
    }

    /// At a phase's end: the next phase's price and quantity apply; after the last, the schedule is released (its
    /// `end_behavior`), and the subscription goes on as it is.
    func advanceSchedule(of subscriptionID: String) {
        guard var subscription = objects[subscriptionID], let scheduleID = subscription["schedule"] as? String,
              var schedule = objects[scheduleID]
        else { return }
        let phases = (schedule["phases"] as? [[String: Any]] ?? []).sorted { ($0["start_date"] as? Int ?? 0) < ($1["start_date"] as? Int ?? 0) }
        guard let next = phases.first(where: { ($0["start_date"] as? Int ?? 0) >= now }) else {
            _ = releaseSchedule(scheduleID)
            return
        }
        if let change = (next["items"] as? [[String: Any]])?.first, let priceID = change["price"] as? String, let price = price(priceID) {
            var items = (subscription["items"] as? [String: Any])?["data"] as? [[String: Any]] ?? []
            if !items.isEmpty {
                items[0]["price"] = priceObject(price)
                items[0]["plan"] = planObject(price)
                if let quantity = change["quantity"] as? Int { items[0]["quantity"] = quantity }
            }
            subscription["items"] = list(items, url: "/v1/subscription_items?subscription=\(subscriptionID)")
            objects[subscriptionID] = subscription
        }
        schedule["current_phase"] = ["start_date": next["start_date"] ?? now, "end_date": next["end_date"] ?? now]
        objects[scheduleID] = schedule
        emit("subscription_schedule.updated", schedule)
    }

    /// The drafted invoice is finalized and charged.
    func finalize(_ id: String) {
        guard var invoice = objects[id] else { return }
        invoice["status"] = "open"
        invoice["number"] = String(format: "STANDIN-%04d", count(of: "invoice"))
        invoice["_finalize_at"] = NSNull()
        invoice["hosted_invoice_url"] = "\(configuration.publicURL)/invoice/\(id)"
        objects[id] = invoice
        emit("invoice.finalized", invoice)
        collectRenewal(id)
    }

    /// Charges a renewal's invoice, and moves its subscription as the outcome says: paid makes a `past_due` or
    /// `unpaid` one active again; a failure makes it `past_due`, with a retry `retryDays` later, until there are no
    /// retries left and the account's setting decides (`afterFinalFailure`).
    func collectRenewal(_ id: String) {
        let attempt = (objects[id]?["attempt_count"] as? Int ?? 0) + 1
        let retry = attempt <= configuration.retryDays.count ? now + configuration.retryDays[attempt - 1] * 86400 : nil
        let outcome = collect(id, nextAttempt: retry)
        for (type, object) in outcome.events { emit(type, object) }
        guard let subscriptionID = Self.subscriptionID(of: objects[id] ?? [:]), var subscription = objects[subscriptionID],
              !Self.ended(subscription)
        else { return }
        let status = subscription["status"] as? String
        if outcome.paid {
            return settled(id)
        } else if retry != nil {
            guard status != "past_due" else { return }
            subscription["status"] = "past_due"
        } else {
            switch configuration.afterFinalFailure {
            case .cancel:
                end(subscriptionID, reason: "payment_failed")
                return
            case .markUnpaid:
                subscription["status"] = "unpaid"
            case .leavePastDue:
                guard status != "past_due" else { return }
                subscription["status"] = "past_due"
            }
        }
        objects[subscriptionID] = subscription
        emit("customer.subscription.updated", subscription)
    }

    /// After a subscription's invoice is paid: a `past_due` or `unpaid` subscription is active again, and a change
    /// waiting for this invoice in `pending_update` applies (`customer.subscription.pending_update_applied`).
    func settled(_ invoiceID: String) {
        guard let subscriptionID = Self.subscriptionID(of: objects[invoiceID] ?? [:]), var subscription = objects[subscriptionID],
              !Self.ended(subscription)
        else { return }
        var changed = false
        if ["past_due", "unpaid"].contains(subscription["status"] as? String ?? "") {
            subscription["status"] = "active"
            changed = true
        }
        if subscription["latest_invoice"] as? String == invoiceID, let pending = subscription["pending_update"] as? [String: Any] {
            subscription["items"] = list(pending["subscription_items"] as? [[String: Any]] ?? [], url: "/v1/subscription_items?subscription=\(subscriptionID)")
            subscription["pending_update"] = NSNull()
            objects[subscriptionID] = subscription
            emit("customer.subscription.pending_update_applied", subscription)
            changed = true
        }
        guard changed else { return }
        objects[subscriptionID] = subscription
        emit("customer.subscription.updated", subscription)
    }

    /// What the hosted invoice page's buttons do: an open invoice is paid with the card chosen there (or declined).
    /// Returns what the page shows.
    public func payInvoice(_ id: String, paymentMethod: String) -> String {
        guard let invoice = objects[id], invoice["object"] as? String == "invoice" else { return "No such invoice." }
        guard invoice["status"] as? String == "open" else { return "This invoice is \(invoice["status"] as? String ?? "closed")." }
        return onClock(of: invoice["customer"] as? String) {
            let outcome = collect(id, nextAttempt: invoice["next_payment_attempt"] as? Int, paymentMethod: paymentMethod)
            for (type, object) in outcome.events { emit(type, object) }
            guard outcome.paid else { return "Your card was declined. Try another card." }
            settled(id)
            return "Paid. Thank you."
        }
    }

    /// The hosted invoice page's view of an invoice.
    public struct InvoiceView: Sendable {
        public var id: String
        public var number: String
        public var status: String
        public var amountDue: Int
        public var amountRemaining: Int
        public var currency: String
    }

    public func invoiceView(_ id: String) -> InvoiceView? {
        guard let invoice = objects[id], invoice["object"] as? String == "invoice", invoice["status"] as? String != "draft" else { return nil }
        return InvoiceView(
            id: id, number: invoice["number"] as? String ?? id, status: invoice["status"] as? String ?? "",
            amountDue: invoice["amount_due"] as? Int ?? 0, amountRemaining: invoice["amount_remaining"] as? Int ?? 0,
            currency: invoice["currency"] as? String ?? "usd")
    }

    static func subscriptionID(of invoice: [String: Any]) -> String? {
        ((invoice["parent"] as? [String: Any])?["subscription_details"] as? [String: Any])?["subscription"] as? String
    }
}
