import BillingCore
import Foundation

extension StandInState {
    /// Test payment methods, as Stripe names them.
    enum TestCard {
        case succeeds, declines, requiresAuthentication
        /// Succeeds, and the card holder disputes the charge at once.
        case disputes

        init(_ paymentMethod: String?) {
            switch paymentMethod {
            case "pm_card_chargeCustomerFail", "pm_card_visa_chargeDeclined", "pm_card_chargeDeclined",
                 "pm_card_chargeDeclinedInsufficientFunds":
                self = .declines
            case "pm_card_authenticationRequired", "pm_card_threeDSecure2Required", "pm_card_authenticationRequiredOnSetup":
                self = .requiresAuthentication
            case "pm_card_createDispute":
                self = .disputes
            default:
                self = .succeeds
            }
        }
    }

    /// `POST /v1/customers/:id`: `invoice_settings[default_payment_method]`, `email`, `name`, `metadata`.
    func updateCustomer(_ id: String, _ params: [String: Any]) -> StandInResponse {
        guard var customer = objects[id], customer["object"] as? String == "customer" else {
            return retrieve(id, kind: "customer")
        }
        if let settings = params["invoice_settings"] as? [String: Any], let method = settings["default_payment_method"] as? String {
            var invoiceSettings = customer["invoice_settings"] as? [String: Any] ?? [:]
            invoiceSettings["default_payment_method"] = method
            customer["invoice_settings"] = invoiceSettings
        }
        if let email = params["email"] as? String { customer["email"] = email }
        if let name = params["name"] as? String { customer["name"] = name }
        if let metadata = params["metadata"] as? [String: Any] {
            customer["metadata"] = (customer["metadata"] as? [String: Any] ?? [:]).merging(metadata) { $1 }
        }
        objects[id] = customer
        emit("customer.updated", customer)
        return Self.json(customer)
    }

    /// The test payment methods (`pm_card_visa` and friends) as card objects.
    func retrievePaymentMethod(_ id: String) -> StandInResponse {
        guard id.hasPrefix("pm_card_") else {
            return Self.error(404, type: "invalid_request_error", code: "resource_missing", param: "id", message: "No such PaymentMethod: '\(id)'")
        }
        let last4 = switch TestCard(id) {
        case .succeeds: "4242"
        case .declines: "0341"
        case .requiresAuthentication: "3184"
        case .disputes: "0259"
        }
        var method = template("payment_method")
        method["id"] = id
        method["type"] = "card"
        method["livemode"] = false
        method["created"] = now
        var card = StandInObjects.fresh("payment_method.Card", example: [:], now: now)
        card["brand"] = "visa"
        card["display_brand"] = "visa"
        card["last4"] = last4
        card["exp_month"] = 12
        card["exp_year"] = 2034
        card["funding"] = "credit"
        card["country"] = "US"
        method["card"] = card
        return Self.json(method)
    }

    func createPaymentIntent(_ params: [String: Any]) -> StandInResponse {
        guard let amount = Int(params["amount"] as? String ?? ""), amount > 0 else {
            return Self.missing("amount", "a positive integer in minor units")
        }
        guard let currency = params["currency"] as? String else {
            return Self.missing("currency")
        }
        // As Stripe: nothing below the currency's minimum charge.
        let minimum = Money.minimumCharge(currency)
        guard amount >= minimum.amount else {
            return Self.error(400, type: "invalid_request_error", code: "amount_too_small", param: "amount",
                              message: "Amount must be at least \(minimum.formatted)")
        }
        if let customer = params["customer"] as? String, objects[customer] == nil {
            return Self.noSuch("customer", customer, param: "customer")
        }
        var intent = template("payment_intent")
        let id = newID("pi")
        intent["id"] = id
        intent["created"] = now
        intent["amount"] = amount
        intent["amount_received"] = 0
        intent["currency"] = currency
        intent["customer"] = params["customer"] as? String ?? NSNull()
        intent["metadata"] = params["metadata"] as? [String: Any] ?? [:]
        intent["description"] = params["description"] as? String ?? NSNull()
        intent["payment_method"] = params["payment_method"] as? String ?? NSNull()
        intent["status"] = params["payment_method"] == nil ? "requires_payment_method" : "requires_confirmation"
        intent["latest_charge"] = NSNull()
        intent["last_payment_error"] = NSNull()
        intent["next_action"] = NSNull()
        intent["livemode"] = false
        // Stripe turns automatic payment methods on when no payment method types are named.
        if let types = params["allowed_payment_method_types"] as? [Any] {
            intent["payment_method_types"] = types
            intent["automatic_payment_methods"] = NSNull()
        } else {
            let automatic = params["automatic_payment_methods"] as? [String: Any]
            let enabled = automatic?["enabled"] as? String != "false"
            intent["automatic_payment_methods"] = enabled
                ? ["enabled": true, "allow_redirects": automatic?["allow_redirects"] as? String ?? "always"] as [String: Any]
                : NSNull()
            intent["payment_method_types"] = ["card"]
        }
        intent["_return_url"] = params["return_url"] as? String ?? NSNull()
        objects[id] = intent
        emit("payment_intent.created", intent)
        if params["confirm"] as? String == "true" {
            return confirmPaymentIntent(id, params)
        }
        return Self.json(intent)
    }

    func confirmPaymentIntent(_ id: String, _ params: [String: Any]) -> StandInResponse {
        guard var intent = objects[id], intent["object"] as? String == "payment_intent" else {
            return retrieve(id, kind: "payment_intent")
        }
        guard ["requires_confirmation", "requires_payment_method", "requires_action"].contains(intent["status"] as? String ?? "") else {
            return Self.error(400, type: "invalid_request_error", code: "payment_intent_unexpected_state",
                              message: "This PaymentIntent's status is \(intent["status"] as? String ?? ""); it cannot be confirmed.")
        }
        if let method = params["payment_method"] as? String { intent["payment_method"] = method }
        let method = intent["payment_method"] as? String
        guard method != nil else {
            return Self.error(400, type: "invalid_request_error", code: "payment_intent_unexpected_state", param: "payment_method",
                              message: "You cannot confirm this PaymentIntent because it's missing a payment method.")
        }
        var rules: [String: Any] = ["automatic_payment_methods": intent["automatic_payment_methods"] ?? NSNull(), "return_url": intent["_return_url"] ?? NSNull()]
        if intent["automatic_payment_methods"] is NSNull { rules["allowed_payment_method_types"] = intent["payment_method_types"] }
        if let problem = StandInRules.redirects(intent: rules, confirmation: params) {
            return Self.error(400, type: "invalid_request_error", code: problem.code, param: problem.param, message: problem.message)
        }
        let offSession = params["off_session"] as? String == "true"
        switch TestCard(method) {
        case .succeeds, .disputes:
            let charge = createCharge(for: intent)
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            intent["latest_charge"] = charge["id"]
            intent["last_payment_error"] = NSNull()
            intent["next_action"] = NSNull()
            objects[id] = intent
            emit("charge.succeeded", charge)
            emit("payment_intent.succeeded", intent)
            for (type, object) in dispute(charge, paymentMethod: method) { emit(type, object) }
            return Self.json(Self.public(intent))
        case .declines:
            let failure: [String: Any] = ["type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                                          "message": "Your card was declined."]
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = failure
            objects[id] = intent
            emit("payment_intent.payment_failed", intent)
            return declined(intent, failure)
        case .requiresAuthentication where offSession:
            // Off-session nobody can authenticate: Stripe fails the attempt with authentication_required and leaves
            // the PaymentIntent waiting for a payment method; the customer must come back on-session.
            let failure: [String: Any] = ["type": "card_error", "code": "authentication_required", "decline_code": "authentication_required",
                                          "message": "Your card was declined. This transaction requires authentication."]
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = failure
            intent["next_action"] = NSNull()
            objects[id] = intent
            emit("payment_intent.payment_failed", intent)
            return declined(intent, failure)
        case .requiresAuthentication:
            intent["status"] = "requires_action"
            intent["next_action"] = ["type": "use_stripe_sdk", "use_stripe_sdk": [:] as [String: Any]] as [String: Any]
            objects[id] = intent
            emit("payment_intent.requires_action", intent)
            return Self.json(Self.public(intent))
        }
    }

    func declined(_ intent: [String: Any], _ failure: [String: Any]) -> StandInResponse {
        var error = failure
        error["payment_intent"] = Self.public(intent)
        let body = (try? JSONSerialization.data(withJSONObject: ["error": error], options: [.sortedKeys])) ?? Data()
        return StandInResponse(status: 402, body: body, headers: [("Content-Type", "application/json"), ("Request-Id", Self.requestID())])
    }

    func createCharge(for intent: [String: Any]) -> [String: Any] {
        var charge = template("charge")
        let id = newID("ch")
        charge["id"] = id
        charge["created"] = now
        charge["amount"] = intent["amount"]
        charge["amount_captured"] = intent["amount"]
        charge["amount_refunded"] = 0
        charge["currency"] = intent["currency"]
        charge["customer"] = intent["customer"]
        charge["payment_intent"] = intent["id"]
        charge["metadata"] = intent["metadata"]
        charge["paid"] = true
        charge["captured"] = true
        charge["refunded"] = false
        charge["status"] = "succeeded"
        charge["livemode"] = false
        objects[id] = charge
        return charge
    }

    func createRefund(_ params: [String: Any]) -> StandInResponse {
        var chargeID = params["charge"] as? String
        if chargeID == nil, let intentID = params["payment_intent"] as? String {
            chargeID = objects[intentID]?["latest_charge"] as? String
            if objects[intentID] == nil {
                return Self.noSuch("payment_intent", intentID, param: "payment_intent")
            }
        }
        guard let chargeID, var charge = objects[chargeID] else {
            return Self.error(400, type: "invalid_request_error", code: "parameter_missing", param: "payment_intent",
                              message: "Give the payment_intent or charge to refund; it must have succeeded.")
        }
        let amount = charge["amount"] as? Int ?? 0
        let refunded = charge["amount_refunded"] as? Int ?? 0
        let requested = Int(params["amount"] as? String ?? "") ?? (amount - refunded)
        guard requested > 0, requested <= amount - refunded else {
            return Self.error(400, type: "invalid_request_error", code: "charge_already_refunded", param: "amount",
                              message: "Refund amount (\(requested)) is greater than the unrefunded amount on the charge (\(amount - refunded)).")
        }
        var refund = template("refund")
        let id = newID("re")
        refund["id"] = id
        refund["created"] = now
        refund["amount"] = requested
        refund["currency"] = charge["currency"]
        refund["charge"] = chargeID
        refund["payment_intent"] = charge["payment_intent"]
        refund["reason"] = params["reason"] as? String ?? NSNull()
        refund["metadata"] = params["metadata"] as? [String: Any] ?? [:]
        refund["status"] = "succeeded"
        objects[id] = refund
        charge["amount_refunded"] = refunded + requested
        charge["refunded"] = refunded + requested == amount
        objects[chargeID] = charge
        emit("refund.created", refund)
        emit("charge.refunded", charge)
        return Self.json(refund)
    }

    /// Makes a refund fail after it succeeded, as Stripe does when the card it went back to was closed (its test card
    /// 4000 0000 0000 5126): the refund becomes `failed` with a `failure_reason`, the charge's `amount_refunded` drops
    /// by its amount (it may be refunded again), and `refund.updated`, `refund.failed` and `charge.refund.updated` are
    /// sent.
    public func failRefund(_ id: String, failureReason: String = "expired_or_canceled_card") -> StandInResponse {
        guard var refund = objects[id], refund["object"] as? String == "refund" else { return Self.noSuch("refund", id, param: "id") }
        guard let status = refund["status"] as? String, status == "succeeded" || status == "pending" else {
            return Self.error(400, type: "invalid_request_error", code: "refund_not_failable", param: "id",
                              message: "Refund \(id) is \(refund["status"] as? String ?? "unknown"); only a pending or succeeded refund can fail.")
        }
        refund["status"] = "failed"
        refund["failure_reason"] = failureReason
        objects[id] = refund
        if let chargeID = refund["charge"] as? String, var charge = objects[chargeID] {
            charge["amount_refunded"] = max(0, (charge["amount_refunded"] as? Int ?? 0) - (refund["amount"] as? Int ?? 0))
            charge["refunded"] = false
            objects[chargeID] = charge
        }
        for type in ["refund.updated", "refund.failed", "charge.refund.updated"] { emit(type, refund) }
        return Self.json(refund)
    }
}
