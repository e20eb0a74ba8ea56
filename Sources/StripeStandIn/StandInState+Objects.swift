import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import StripeAPI

/// Stripe's objects as the stand-in makes them: ids, customers, prices, and the shapes every answer shares.
extension StandInState {
    func newID(_ prefix: String) -> String {
        sequence += 1
        let random = (0..<14).map { _ in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".randomElement()! }
        return "\(prefix)_\(String(random))\(sequence)"
    }

    /// The time of what is being done: a test clock's frozen time for its customers, else the wall clock's.
    var now: Int {
        if let clock = clockInScope, let frozen = objects[clock]?["frozen_time"] as? Int { return frozen }
        return wallNow
    }

    /// The stand-in's own time, whatever clock is in scope (idempotency keys expire by it).
    var wallNow: Int { Int(configuration.clock().timeIntervalSince1970) + clockShift }

    /// Moves the stand-in's own clock forward (idempotency keys expire by it).
    public func advanceClock(by seconds: Int) { clockShift += seconds }

    /// A new object of `kind` in Stripe's shape, with no example value left over (`StandInObjects`).
    func template(_ kind: String) -> [String: Any] {
        StandInObjects.fresh(kind, example: templates[kind] as? [String: Any] ?? ["object": kind], now: now)
    }

    func store(_ object: [String: Any]) -> StandInResponse {
        objects[object["id"] as! String] = object
        return Self.json(object)
    }

    func retrieve(_ id: String, kind: String) -> StandInResponse {
        guard let object = objects[id], object["object"] as? String == kind else {
            return Self.error(404, type: "invalid_request_error", code: "resource_missing", param: "id",
                              message: "No such \(kind): '\(id)'")
        }
        return Self.json(object)
    }

    func createCustomer(_ params: [String: Any]) -> StandInResponse {
        if let clock = params["test_clock"] as? String {
            guard objects[clock]?["object"] as? String == Self.clockKind else {
                return Self.noSuch("test_helpers.test_clock", clock, param: "test_clock")
            }
            guard customers(on: clock).count < 3 else {
                return Self.error(400, type: "invalid_request_error", param: "test_clock",
                                  message: "Test clock \(clock) has 3 customers already, the most a test clock can have; create another test clock.")
            }
        }
        var customer = template("customer")
        customer["id"] = newID("cus")
        customer["created"] = now
        customer["email"] = params["email"] as? String ?? NSNull()
        customer["name"] = params["name"] as? String ?? NSNull()
        customer["metadata"] = params["metadata"] as? [String: Any] ?? [:]
        customer["test_clock"] = params["test_clock"] as? String ?? NSNull()
        customer["livemode"] = false
        let response = store(customer)
        emit("customer.created", customer)
        return response
    }

    func price(_ id: String) -> StandInPrice? { configuration.prices.first { $0.id == id } }

    func createCheckoutSession(_ params: [String: Any]) -> StandInResponse {
        guard let mode = params["mode"] as? String, ["payment", "subscription", "setup"].contains(mode) else {
            return Self.missing("mode", "payment, subscription or setup")
        }
        guard let successURL = params["success_url"] as? String else {
            return Self.missing("success_url")
        }
        if let customer = params["customer"] as? String, objects[customer] == nil {
            return Self.noSuch("customer", customer, param: "customer")
        }
        var total = 0
        var currency = "usd"
        let items = params["line_items"] as? [Any] ?? []
        if mode != "setup" && items.isEmpty {
            return Self.missing("line_items")
        }
        for (index, raw) in items.enumerated() {
            let item = raw as? [String: Any] ?? [:]
            let quantity = Int(item["quantity"] as? String ?? "1") ?? 1
            if let priceID = item["price"] as? String {
                guard let price = price(priceID) else {
                    return Self.noSuch("price", priceID, param: "line_items[\(index)][price]")
                }
                if mode == "subscription" && price.interval == nil {
                    return Self.error(400, type: "invalid_request_error", param: "line_items[\(index)][price]",
                                      message: "A subscription Checkout Session needs recurring prices.")
                }
                total += price.unitAmount * quantity
                currency = price.currency
            } else if let data = item["price_data"] as? [String: Any], let amount = Int(data["unit_amount"] as? String ?? "") {
                total += amount * quantity
                currency = data["currency"] as? String ?? currency
            } else {
                return Self.error(400, type: "invalid_request_error", code: "parameter_missing", param: "line_items[\(index)][price]",
                                  message: "Each line item needs price or price_data.")
            }
        }
        var session = template("checkout.session")
        let id = newID("cs_test")
        session["id"] = id
        session["object"] = "checkout.session"
        session["created"] = now
        session["expires_at"] = now + 24 * 3600
        session["mode"] = mode
        session["status"] = "open"
        session["payment_status"] = mode == "setup" ? "no_payment_required" : "unpaid"
        session["success_url"] = successURL
        session["cancel_url"] = params["cancel_url"] as? String ?? NSNull()
        session["client_reference_id"] = params["client_reference_id"] as? String ?? NSNull()
        session["customer"] = params["customer"] as? String ?? NSNull()
        session["customer_email"] = params["customer_email"] as? String ?? NSNull()
        session["metadata"] = params["metadata"] as? [String: Any] ?? [:]
        // A trial is free today: Stripe's session totals what is due now, and the first charge comes when it ends.
        let trialDays = Int((params["subscription_data"] as? [String: Any])?["trial_period_days"] as? String ?? "") ?? 0
        let dueNow = mode == "subscription" && trialDays > 0 ? 0 : total
        session["amount_total"] = dueNow
        session["amount_subtotal"] = dueNow
        session["_recurring_total"] = total
        session["currency"] = currency
        session["payment_intent"] = NSNull()
        session["subscription"] = NSNull()
        session["allow_promotion_codes"] = (params["allow_promotion_codes"] as? String) == "true" ? true : NSNull()
        session["url"] = "\(configuration.publicURL)/checkout/\(id)"
        session["livemode"] = false
        // Kept for completion: what the hosted page needs to create the payment or subscription.
        session["_line_items"] = items
        session["_payment_intent_data"] = params["payment_intent_data"] as? [String: Any] ?? [:]
        session["_subscription_data"] = params["subscription_data"] as? [String: Any] ?? [:]
        session["_setup_intent_data"] = params["setup_intent_data"] as? [String: Any] ?? [:]
        session["setup_intent"] = NSNull()
        objects[id] = session
        return Self.json(Self.public(session))
    }

    func expireCheckoutSession(_ id: String) -> StandInResponse {
        guard var session = objects[id], session["object"] as? String == "checkout.session" else {
            return retrieve(id, kind: "checkout.session")
        }
        guard session["status"] as? String == "open" else {
            return Self.error(400, type: "invalid_request_error", message: "Only open Checkout Sessions can be expired.")
        }
        session["status"] = "expired"
        objects[id] = session
        emit("checkout.session.expired", Self.public(session))
        return Self.json(Self.public(session))
    }

    func createPortalSession(_ params: [String: Any]) -> StandInResponse {
        guard let customer = params["customer"] as? String, objects[customer] != nil else {
            return Self.error(400, type: "invalid_request_error", code: "resource_missing", param: "customer",
                              message: "No such customer: '\(params["customer"] as? String ?? "")'")
        }
        var session = template("billing_portal.session")
        let id = newID("bps")
        session["id"] = id
        session["created"] = now
        session["customer"] = customer
        session["return_url"] = params["return_url"] as? String ?? NSNull()
        session["url"] = "\(configuration.publicURL)/portal/\(id)"
        session["livemode"] = false
        session["flow"] = NSNull()
        return store(session)
    }

    func cancelSubscription(_ id: String) -> StandInResponse {
        guard var subscription = objects[id], subscription["object"] as? String == "subscription" else {
            return retrieve(id, kind: "subscription")
        }
        subscription["status"] = "canceled"
        subscription["canceled_at"] = now
        subscription["ended_at"] = now
        objects[id] = subscription
        emit("customer.subscription.deleted", subscription)
        return Self.json(subscription)
    }

    func listEvents(_ params: [String: Any]) -> StandInResponse {
        let limit = min(max(Int(params["limit"] as? String ?? "10") ?? 10, 1), 100)
        let createdAfter = Int((params["created"] as? [String: Any])?["gt"] as? String ?? "") ?? Int.min
        var newestFirst = events.reversed().filter { ($0["created"] as? Int ?? 0) > createdAfter }
        if let after = params["starting_after"] as? String, let index = newestFirst.firstIndex(where: { $0["id"] as? String == after }) {
            newestFirst = Array(newestFirst[(index + 1)...])
        }
        let page = Array(newestFirst.prefix(limit))
        return Self.json(["object": "list", "url": "/v1/events", "has_more": newestFirst.count > page.count, "data": page])
    }

    func list(_ items: [[String: Any]], url: String) -> [String: Any] {
        ["object": "list", "data": items, "has_more": false, "total_count": items.count, "url": url]
    }

    func priceObject(_ price: StandInPrice) -> [String: Any] {
        var object = template("price")
        object["id"] = price.id
        object["unit_amount"] = price.unitAmount
        object["unit_amount_decimal"] = String(price.unitAmount)
        object["currency"] = price.currency
        object["type"] = price.interval == nil ? "one_time" : "recurring"
        object["recurring"] = price.interval.map { ["interval": $0, "interval_count": 1, "usage_type": "licensed", "meter": NSNull(), "trial_period_days": NSNull()] as [String: Any] } ?? NSNull()
        object["livemode"] = false
        return object
    }

    /// The legacy `plan` view of a price, as Stripe still sends on subscription items.
    func planObject(_ price: StandInPrice) -> [String: Any] {
        var plan = template("plan")
        plan["id"] = price.id
        plan["amount"] = price.unitAmount
        plan["amount_decimal"] = String(price.unitAmount)
        plan["currency"] = price.currency
        plan["interval"] = price.interval ?? "month"
        plan["interval_count"] = 1
        plan["active"] = true
        plan["livemode"] = false
        plan["usage_type"] = "licensed"
        plan["billing_scheme"] = "per_unit"
        return plan
    }
}
