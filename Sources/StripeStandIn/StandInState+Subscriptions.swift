import BillingCore
import Foundation

extension StandInState {
    /// `POST /v1/subscriptions/:id`: quantities and prices (`items`), `cancel_at_period_end`, `cancel_at` (a time, or ""
    /// to clear it), `default_payment_method`, `metadata`. With `proration_behavior=always_invoice` a change that costs
    /// more is invoiced and charged at once (prorated per second of the period left, as Stripe documents); with
    /// `payment_behavior=pending_if_incomplete` a charge that fails leaves the subscription as it was, with the change
    /// in `pending_update` until it expires.
    func updateSubscription(_ id: String, _ params: [String: Any]) -> StandInResponse {
        guard var subscription = objects[id], subscription["object"] as? String == "subscription" else {
            return retrieve(id, kind: "subscription")
        }
        guard subscription["status"] as? String != "canceled" else {
            return Self.error(400, type: "invalid_request_error",
                              message: "A canceled subscription can only update its cancellation_details and metadata.")
        }
        // "If the subscription is managed by a subscription schedule, you can't update cancel_at_period_end or
        // cancel_at directly; update the schedule instead."
        if let schedule = subscription["schedule"] as? String, params["cancel_at_period_end"] != nil || params["cancel_at"] != nil {
            return Self.error(400, type: "invalid_request_error",
                              message: "The subscription is managed by the subscription schedule `\(schedule)`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead.")
        }
        if let cancel = params["cancel_at_period_end"] as? String {
            subscription["cancel_at_period_end"] = cancel == "true"
            subscription["cancel_at"] = cancel == "true" ? periodEnd(of: subscription) ?? NSNull() : NSNull()
        }
        if let cancelAt = params["cancel_at"] as? String {
            // A time, "" to clear it, or (with one billing period for every item here) the period's end by name.
            let periodEnds = ["max_period_end", "min_period_end", "max_billed_until"].contains(cancelAt)
            subscription["cancel_at"] = periodEnds ? periodEnd(of: subscription) ?? NSNull() : Int(cancelAt) ?? NSNull()
            if cancelAt.isEmpty { subscription["cancel_at_period_end"] = false }
        }
        if let method = params["default_payment_method"] as? String { subscription["default_payment_method"] = method.isEmpty ? NSNull() : method }
        if let metadata = params["metadata"] as? [String: Any] {
            subscription["metadata"] = (subscription["metadata"] as? [String: Any] ?? [:]).merging(metadata) { $1 }
        }
        var emitted: [(String, [String: Any])] = []
        if let changes = params["items"] as? [Any] {
            let before = (subscription["items"] as? [String: Any])?["data"] as? [[String: Any]] ?? []
            var items = before
            for raw in changes {
                let change = raw as? [String: Any] ?? [:]
                guard let itemID = change["id"] as? String, let index = items.firstIndex(where: { $0["id"] as? String == itemID }) else {
                    return Self.error(400, type: "invalid_request_error", code: "resource_missing", param: "items[0][id]",
                                      message: "No such subscription item on \(id)")
                }
                if let quantity = (change["quantity"] as? String).flatMap(Int.init) { items[index]["quantity"] = quantity }
                if let priceID = change["price"] as? String {
                    guard let price = price(priceID) else {
                        return Self.noSuch("price", priceID, param: "items[0][price]")
                    }
                    items[index]["price"] = priceObject(price)
                    items[index]["plan"] = planObject(price)
                }
            }
            let proration = prorationAmount(from: before, to: items, subscription: subscription)
            let behavior = params["payment_behavior"] as? String ?? "allow_incomplete"
            guard ["allow_incomplete", "pending_if_incomplete"].contains(behavior) else {
                return Self.error(400, type: "invalid_request_error", param: "payment_behavior",
                                  message: "The stand-in implements payment_behavior allow_incomplete (the default) and pending_if_incomplete on updates, not \(behavior).")
            }
            if params["proration_behavior"] as? String == "always_invoice", proration > 0 {
                let outcome = invoiceProration(proration, subscription: subscription)
                emitted += outcome.events
                if !outcome.paid && behavior == "pending_if_incomplete" {
                    // Nothing changes until the invoice is paid; the change waits in pending_update.
                    var pending = StandInObjects.fresh("subscription.PendingUpdate", example: [:], now: now)
                    pending["expires_at"] = now + 23 * 3600
                    pending["subscription_items"] = items
                    subscription["pending_update"] = pending
                    subscription["latest_invoice"] = outcome.invoice["id"]
                    objects[id] = subscription
                    for (type, object) in emitted { emit(type, object) }
                    emit("customer.subscription.updated", subscription)
                    return Self.json(subscription)
                }
                subscription["latest_invoice"] = outcome.invoice["id"]
                // allow_incomplete: the change applies, and an invoice left unpaid makes the subscription past due.
                if !outcome.paid { subscription["status"] = "past_due" }
            }
            subscription["items"] = list(items, url: "/v1/subscription_items?subscription=\(id)")
            // A change that applies replaces one still waiting for its payment.
            subscription["pending_update"] = NSNull()
        }
        objects[id] = subscription
        for (type, object) in emitted { emit(type, object) }
        emit("customer.subscription.updated", subscription)
        return Self.json(subscription)
    }

    func periodEnd(of subscription: [String: Any]) -> Int? {
        (((subscription["items"] as? [String: Any])?["data"] as? [[String: Any]])?.compactMap { $0["current_period_end"] as? Int }.max())
    }

    /// What the change costs for the rest of the period: the new recurring amount less the old, for the share of the
    /// period left, to the second.
    func prorationAmount(from before: [[String: Any]], to after: [[String: Any]], subscription: [String: Any]) -> Int {
        func amount(_ items: [[String: Any]]) -> Int {
            items.reduce(0) { total, item in
                total + ((item["price"] as? [String: Any])?["unit_amount"] as? Int ?? 0) * (item["quantity"] as? Int ?? 1)
            }
        }
        guard let item = after.first, let end = item["current_period_end"] as? Int, let start = item["current_period_start"] as? Int,
              end > start
        else { return 0 }
        let left = Double(max(0, end - now)) / Double(end - start)
        return Int((Double(amount(after) - amount(before)) * left).rounded())
    }

    /// A proration invoice, finalized and charged at once to the subscription's (or the customer's) default payment
    /// method. Its events are returned, for the caller to send after the subscription's own change.
    func invoiceProration(_ amount: Int, subscription: [String: Any]) -> (invoice: [String: Any], paid: Bool, events: [(String, [String: Any])]) {
        let invoice = subscriptionInvoice(amount, subscription: subscription, reason: "subscription_update")
        let id = invoice["id"] as! String
        objects[id] = invoice
        let outcome = collect(id, nextAttempt: nil)
        return (objects[id] ?? invoice, outcome.paid,
                [("invoice.created", invoice), ("invoice.finalized", invoice)] + outcome.events)
    }

    /// A finalized (`open`) invoice of the subscription for `amount`, not yet charged or stored.
    func subscriptionInvoice(_ amount: Int, subscription: [String: Any], reason: String) -> [String: Any] {
        var invoice = template("invoice")
        let id = newID("in")
        invoice["id"] = id
        invoice["number"] = String(format: "STANDIN-%04d", count(of: "invoice") + 1)
        invoice["created"] = now
        invoice["customer"] = subscription["customer"] as? String ?? ""
        invoice["currency"] = subscription["currency"] as? String ?? "usd"
        invoice["billing_reason"] = reason
        invoice["collection_method"] = "charge_automatically"
        invoice["status"] = "open"
        invoice["amount_due"] = amount
        invoice["amount_paid"] = 0
        invoice["amount_remaining"] = amount
        invoice["total"] = amount
        invoice["subtotal"] = amount
        invoice["period_start"] = now
        invoice["period_end"] = now
        invoice["attempt_count"] = 0
        invoice["attempted"] = false
        invoice["next_payment_attempt"] = NSNull()
        invoice["hosted_invoice_url"] = "\(configuration.publicURL)/invoice/\(id)"
        invoice["livemode"] = false
        var parent = StandInObjects.fresh("invoice.Parent", example: [:], now: now)
        parent["type"] = "subscription_details"
        var details = StandInObjects.fresh("invoice.Parent.SubscriptionDetails", example: [:], now: now)
        details["subscription"] = subscription["id"]
        details["metadata"] = subscription["metadata"]
        parent["subscription_details"] = details
        invoice["parent"] = parent
        return invoice
    }

    /// One payment attempt on an open invoice, with `paymentMethod` (the hosted invoice page's card) or else the
    /// subscription's default payment method, or else the customer's, through the invoice's PaymentIntent (made at the first attempt, confirmed again at each retry).
    /// A failure leaves it open, to be tried again at `nextAttempt` when given. Returns the events, not yet sent.
    func collect(_ id: String, nextAttempt: Int?, paymentMethod: String? = nil) -> (paid: Bool, events: [(String, [String: Any])]) {
        guard var invoice = objects[id] else { return (false, []) }
        let customerID = invoice["customer"] as? String ?? ""
        let subscription = Self.subscriptionID(of: invoice).flatMap { objects[$0] }
        let method = paymentMethod ?? subscription?["default_payment_method"] as? String
            ?? ((objects[customerID]?["invoice_settings"] as? [String: Any])?["default_payment_method"] as? String)
        let amount = invoice["amount_remaining"] as? Int ?? 0
        invoice["attempt_count"] = (invoice["attempt_count"] as? Int ?? 0) + 1
        invoice["attempted"] = true
        invoice["next_payment_attempt"] = NSNull()
        guard amount > 0 else {
            invoice["status"] = "paid"
            objects[id] = invoice
            return (true, [("invoice.paid", invoice)])
        }
        var intent = (invoice["_payment_intent"] as? String).flatMap { objects[$0] } ?? {
            var intent = template("payment_intent")
            intent["id"] = newID("pi")
            intent["created"] = now
            intent["amount"] = amount
            intent["currency"] = invoice["currency"]
            intent["customer"] = customerID
            intent["metadata"] = [:] as [String: Any]
            intent["livemode"] = false
            return intent
        }()
        let intentID = intent["id"] as! String
        invoice["_payment_intent"] = intentID
        intent["payment_method"] = method ?? NSNull()
        if method != nil, [.succeeds, .disputes].contains(TestCard(method)) {
            intent["status"] = "succeeded"
            intent["amount_received"] = amount
            intent["last_payment_error"] = NSNull()
            let charge = createCharge(for: intent)
            intent["latest_charge"] = charge["id"]
            invoice["status"] = "paid"
            invoice["amount_paid"] = amount
            invoice["amount_remaining"] = 0
            invoice["_payments"] = invoicePayments(invoice) + [invoicePayment(invoice: id, intent: intent)]
            objects[intentID] = intent
            objects[id] = invoice
            let events = [("charge.succeeded", charge), ("invoice.paid", invoice)]
                + invoicePayments(invoice).map { ("invoice_payment.paid", $0) } + [("payment_intent.succeeded", intent)]
            return (true, events + dispute(charge, paymentMethod: method))
        }
        let failure: [String: Any] = TestCard(method) == .requiresAuthentication
            ? ["type": "card_error", "code": "authentication_required", "message": "This transaction requires authentication."]
            : ["type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."]
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = failure
        invoice["next_payment_attempt"] = nextAttempt ?? NSNull()
        objects[intentID] = intent
        objects[id] = invoice
        return (false, [("payment_intent.payment_failed", intent), ("invoice.payment_failed", invoice)])
    }

    /// `GET /v1/invoices/:id`, with its payments when asked for (`expand[]=payments`).
    func retrieveInvoice(_ id: String, _ params: [String: Any]) -> StandInResponse {
        guard var invoice = objects[id], invoice["object"] as? String == "invoice" else { return retrieve(id, kind: "invoice") }
        if (params["expand"] as? [Any])?.contains(where: { $0 as? String == "payments" }) == true {
            invoice["payments"] = list(invoicePayments(invoice), url: "/v1/invoice_payments?invoice=\(id)")
        }
        return Self.json(invoice)
    }

    // MARK: Subscription schedules

    /// What the portal does for a downgrade at the period's end: a schedule whose next phase, from the period's end,
    /// has the new price; the subscription names it in `schedule`.
    func scheduleChange(_ subscriptionID: String, to priceID: String) -> String? {
        guard var subscription = objects[subscriptionID], let end = periodEnd(of: subscription),
              let item = ((subscription["items"] as? [String: Any])?["data"] as? [[String: Any]])?.first,
              let current = (item["price"] as? [String: Any])?["id"] as? String, price(priceID) != nil
        else { return "No such subscription or price." }
        var schedule = template("subscription_schedule")
        let id = newID("sub_sched")
        func phase(_ price: String, from start: Int, to finish: Int) -> [String: Any] {
            var phase = StandInObjects.fresh("subscription_schedule.Phase", example: [:], now: now)
            var phaseItem = StandInObjects.fresh("subscription_schedule.Phase.Item", example: [:], now: now)
            phaseItem["price"] = price
            phaseItem["quantity"] = item["quantity"] ?? 1
            phaseItem["metadata"] = [:] as [String: Any]
            phase["items"] = [phaseItem]
            phase["start_date"] = start
            phase["end_date"] = finish
            phase["proration_behavior"] = "create_prorations"
            return phase
        }
        let start = item["current_period_start"] as? Int ?? now
        schedule["id"] = id
        schedule["created"] = now
        schedule["customer"] = subscription["customer"]
        schedule["subscription"] = subscriptionID
        schedule["status"] = "active"
        schedule["end_behavior"] = "release"
        schedule["phases"] = [phase(current, from: start, to: end), phase(priceID, from: end, to: end + (end - start))]
        schedule["current_phase"] = ["start_date": start, "end_date": end]
        schedule["livemode"] = false
        schedule["metadata"] = [:] as [String: Any]
        objects[id] = schedule
        subscription["schedule"] = id
        objects[subscriptionID] = subscription
        emit("subscription_schedule.created", schedule)
        emit("customer.subscription.updated", subscription)
        return nil
    }

    /// `POST /v1/subscription_schedules/:id/release`: the schedule stops governing; the subscription goes on as it is.
    func releaseSchedule(_ id: String) -> StandInResponse {
        guard var schedule = objects[id], schedule["object"] as? String == "subscription_schedule" else {
            return retrieve(id, kind: "subscription_schedule")
        }
        guard ["active", "not_started"].contains(schedule["status"] as? String ?? "") else {
            return Self.error(400, type: "invalid_request_error",
                              message: "You cannot release a subscription schedule that is currently in the `\(schedule["status"] as? String ?? "")` status. It must be in `not_started` or `active`.")
        }
        let subscriptionID = schedule["subscription"] as? String
        schedule["status"] = "released"
        schedule["released_at"] = now
        schedule["released_subscription"] = subscriptionID ?? NSNull()
        schedule["subscription"] = NSNull()
        schedule["current_phase"] = NSNull()
        objects[id] = schedule
        emit("subscription_schedule.released", schedule)
        if let subscriptionID, var subscription = objects[subscriptionID] {
            subscription["schedule"] = NSNull()
            objects[subscriptionID] = subscription
            emit("customer.subscription.updated", subscription)
        }
        return Self.json(schedule)
    }
}
