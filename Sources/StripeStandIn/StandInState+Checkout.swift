import AsyncHTTPClient
import Foundation
import NIOCore
import StripeAPI

extension StandInState {
    /// What a person did on the hosted Checkout page.
    public enum CheckoutOutcome: String, Sendable, CaseIterable {
        /// The card is charged.
        case pay
        /// The card is declined: the session stays open and `payment_intent.payment_failed` is sent.
        case decline
        /// 3-D Secure is required: the page asks for it before paying.
        case authenticate
        /// The person passed the 3-D Secure challenge.
        case authenticated
        /// Setup mode: saves a card that is declined when it is charged later.
        case saveDeclining
        /// The person failed it.
        case authenticationFailed = "authentication_failed"
        /// Pays with 4000 0000 0000 0259: the charge succeeds, and the card holder disputes it at once.
        case disputed
        case cancel
    }

    public struct CheckoutView: Sendable {
        public var id: String
        public var mode: String
        public var status: String
        public var amountTotal: Int
        /// A subscription's total per period, and its free trial (days) if it has one.
        public var recurringTotal: Int
        public var trialDays: Int
        public var currency: String
        public var lines: [String]
        public var successURL: String
        public var cancelURL: String?
    }

    public func checkoutView(_ id: String) -> CheckoutView? {
        guard let session = objects[id], session["object"] as? String == "checkout.session" else { return nil }
        let lines = (session["_line_items"] as? [Any] ?? []).map { raw -> String in
            let item = raw as? [String: Any] ?? [:]
            let quantity = item["quantity"] as? String ?? "1"
            if let priceID = item["price"] as? String, let price = price(priceID) {
                return "\(quantity) × \(price.productName) (\(price.interval.map { "per \($0)" } ?? "once"))"
            }
            let name = ((item["price_data"] as? [String: Any])?["product_data"] as? [String: Any])?["name"] as? String
            return "\(quantity) × \(name ?? "item")"
        }
        return CheckoutView(
            id: id, mode: session["mode"] as? String ?? "", status: session["status"] as? String ?? "",
            amountTotal: session["amount_total"] as? Int ?? 0, recurringTotal: session["_recurring_total"] as? Int ?? 0,
            trialDays: Self.trialDays(of: session), currency: session["currency"] as? String ?? "usd", lines: lines,
            successURL: session["success_url"] as? String ?? "", cancelURL: session["cancel_url"] as? String)
    }

    /// Where the person goes next: a redirect URL, or a message to show on the page.
    public enum CheckoutResult: Sendable, Equatable {
        case redirect(String)
        case message(String)
        case challenge
    }

    /// Completes, declines or cancels a session as the hosted page's buttons do, emitting what Stripe would emit (at
    /// the time of the customer's test clock, if it is on one).
    public func complete(_ id: String, outcome: CheckoutOutcome) -> CheckoutResult {
        onClock(of: objects[id]?["customer"] as? String) { completeSession(id, outcome: outcome) }
    }

    func completeSession(_ id: String, outcome: CheckoutOutcome) -> CheckoutResult {
        guard var session = objects[id], session["object"] as? String == "checkout.session" else {
            return .message("No such Checkout Session.")
        }
        guard session["status"] as? String == "open" else {
            return .message("This Checkout Session is \(session["status"] as? String ?? "closed").")
        }
        switch outcome {
        case .cancel:
            return .redirect((session["cancel_url"] as? String) ?? (session["success_url"] as? String ?? "/"))
        case .authenticate:
            return .challenge
        case .decline where session["mode"] as? String == "setup", .saveDeclining:
            // Saving a card that is declined when charged succeeds: the decline comes with the first payment.
            break
        case .decline, .authenticationFailed:
            var intent = paymentIntent(for: session, status: "requires_payment_method")
            intent["last_payment_error"] = outcome == .decline
                ? ["type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."]
                : ["type": "card_error", "code": "payment_intent_authentication_failure",
                   "message": "The provided payment method has failed authentication."]
            objects[intent["id"] as! String] = intent
            session["payment_intent"] = intent["id"]
            objects[id] = session
            emit("payment_intent.payment_failed", intent)
            return .message(outcome == .decline ? "Your card was declined. Try another card." : "Authentication failed. Try again.")
        case .pay, .authenticated, .disputed:
            break
        }

        let customerID = ensureCustomer(for: &session)
        let trial = session["mode"] as? String == "subscription" && Self.trialDays(of: session) > 0
        session["customer"] = customerID
        session["status"] = "complete"
        // Nothing is charged for a setup or a trial: the card is kept for later.
        session["payment_status"] = session["mode"] as? String == "setup" || trial ? "no_payment_required" : "paid"
        var emitted: [(String, [String: Any])] = []
        switch session["mode"] as? String {
        case "subscription" where trial:
            // Stripe's first invoice of a trial is for 0.00 and paid at once, with no payment.
            let subscription = createSubscription(for: session, customer: customerID)
            session["subscription"] = subscription["id"]
            let invoice = paidInvoice(for: session, subscription: subscription, intent: nil)
            emitted = [("customer.subscription.created", subscription), ("checkout.session.completed", Self.public(session)),
                       ("invoice.paid", invoice)]
        case "subscription":
            let subscription = createSubscription(for: session, customer: customerID)
            session["subscription"] = subscription["id"]
            var intent = paymentIntent(for: session, status: "succeeded", customer: customerID)
            let charge = charged(&intent)
            let invoice = paidInvoice(for: session, subscription: subscription, intent: intent)
            emitted = [("customer.subscription.created", subscription), ("checkout.session.completed", Self.public(session)),
                       ("charge.succeeded", charge), ("invoice.paid", invoice)]
                + invoicePayments(invoice).map { ("invoice_payment.paid", $0) } + [("payment_intent.succeeded", intent)]
        case "payment":
            var intent = paymentIntent(for: session, status: "succeeded", customer: customerID)
            let charge = charged(&intent)
            session["payment_intent"] = intent["id"]
            emitted = [("checkout.session.completed", Self.public(session)), ("charge.succeeded", charge),
                       ("payment_intent.succeeded", intent)]
        default:
            // Setup mode: the card is saved for later off-session payments. Which test card the person chose decides
            // how those payments go: one that succeeds, one declined when charged, one that needs authentication.
            let method = switch outcome {
            case .authenticated: "pm_card_authenticationRequired"
            case .saveDeclining: "pm_card_chargeCustomerFail"
            default: "pm_card_visa"
            }
            let intent = setupIntent(for: session, customer: customerID, paymentMethod: method)
            session["setup_intent"] = intent["id"]
            emitted = [("setup_intent.succeeded", intent), ("checkout.session.completed", Self.public(session))]
        }
        objects[id] = session
        if outcome == .disputed, let charge = emitted.first(where: { $0.0 == "charge.succeeded" })?.1 {
            emitted += dispute(charge, paymentMethod: "pm_card_createDispute")
        }
        for (type, object) in emitted { emit(type, object) }
        let successURL = (session["success_url"] as? String ?? "/").replacingOccurrences(of: "{CHECKOUT_SESSION_ID}", with: id)
        return .redirect(successURL)
    }

    func ensureCustomer(for session: inout [String: Any]) -> String {
        if let existing = session["customer"] as? String { return existing }
        var customer = template("customer")
        let id = newID("cus")
        customer["id"] = id
        customer["created"] = now
        customer["email"] = session["customer_email"] as? String ?? NSNull()
        customer["metadata"] = [:] as [String: Any]
        customer["livemode"] = false
        objects[id] = customer
        emit("customer.created", customer)
        return id
    }

    func paymentIntent(for session: [String: Any], status: String, customer: String? = nil) -> [String: Any] {
        var intent = template("payment_intent")
        let id = newID("pi")
        intent["id"] = id
        intent["created"] = now
        intent["amount"] = session["amount_total"] as? Int ?? 0
        intent["amount_received"] = status == "succeeded" ? session["amount_total"] as? Int ?? 0 : 0
        intent["currency"] = session["currency"] as? String ?? "usd"
        intent["customer"] = customer ?? session["customer"] as? String ?? NSNull()
        intent["status"] = status
        intent["metadata"] = (session["_payment_intent_data"] as? [String: Any])?["metadata"] as? [String: Any] ?? [:]
        intent["latest_charge"] = NSNull()
        intent["last_payment_error"] = NSNull()
        intent["next_action"] = NSNull()
        intent["livemode"] = false
        return intent
    }

    /// The charge that paid a succeeded PaymentIntent, stored with it.
    func charged(_ intent: inout [String: Any]) -> [String: Any] {
        let charge = createCharge(for: intent)
        intent["latest_charge"] = charge["id"]
        objects[intent["id"] as! String] = intent
        return charge
    }

    /// A succeeded SetupIntent that saved `paymentMethod` to the customer for off-session use.
    func setupIntent(for session: [String: Any], customer: String, paymentMethod: String) -> [String: Any] {
        let id = newID("seti")
        var intent = template("setup_intent")
        intent["id"] = id
        intent["created"] = now
        intent["customer"] = customer
        intent["livemode"] = false
        intent["payment_method"] = paymentMethod
        intent["payment_method_types"] = ["card"]
        intent["status"] = "succeeded"
        intent["usage"] = "off_session"
        intent["metadata"] = (session["_setup_intent_data"] as? [String: Any])?["metadata"] as? [String: Any] ?? [:]
        intent["client_secret"] = "\(id)_secret_standin"
        objects[id] = intent
        return intent
    }

    static func trialDays(of session: [String: Any]) -> Int {
        Int((session["_subscription_data"] as? [String: Any])?["trial_period_days"] as? String ?? "") ?? 0
    }

    func createSubscription(for session: [String: Any], customer: String) -> [String: Any] {
        var subscription = template("subscription")
        let id = newID("sub")
        let subscriptionData = session["_subscription_data"] as? [String: Any] ?? [:]
        let trialDays = Self.trialDays(of: session)
        // A trial's period ends with it; otherwise one interval of the price, by the calendar.
        let interval = (session["_line_items"] as? [Any] ?? []).lazy
            .compactMap { (($0 as? [String: Any])?["price"] as? String).flatMap(self.price)?.interval }.first
        let periodEnd = trialDays > 0 ? now + trialDays * 86400 : Self.periodEnd(from: now, interval: interval ?? "month")
        let items = (session["_line_items"] as? [Any] ?? []).compactMap { raw -> [String: Any]? in
            let line = raw as? [String: Any] ?? [:]
            guard let priceID = line["price"] as? String, let price = price(priceID) else { return nil }
            var item = template("subscription_item")
            item["id"] = newID("si")
            item["created"] = now
            item["subscription"] = id
            item["quantity"] = Int(line["quantity"] as? String ?? "1") ?? 1
            item["price"] = priceObject(price)
            item["plan"] = planObject(price)
            item["current_period_start"] = now
            item["current_period_end"] = periodEnd
            item["metadata"] = [:] as [String: Any]
            return item
        }
        subscription["id"] = id
        subscription["created"] = now
        subscription["start_date"] = now
        subscription["customer"] = customer
        subscription["status"] = trialDays > 0 ? "trialing" : "active"
        subscription["trial_start"] = trialDays > 0 ? now : NSNull()
        subscription["trial_end"] = trialDays > 0 ? periodEnd : NSNull()
        subscription["cancel_at_period_end"] = false
        subscription["currency"] = (session["currency"] as? String) ?? "usd"
        subscription["billing_cycle_anchor"] = periodEnd
        subscription["collection_method"] = "charge_automatically"
        // Checkout saves the card it was paid with as the subscription's default for its renewals.
        subscription["default_payment_method"] = "pm_card_visa"
        subscription["canceled_at"] = NSNull()
        subscription["ended_at"] = NSNull()
        subscription["metadata"] = subscriptionData["metadata"] as? [String: Any] ?? [:]
        subscription["items"] = list(items, url: "/v1/subscription_items?subscription=\(id)")
        subscription["livemode"] = false
        objects[id] = subscription
        return subscription
    }

    /// One payment towards an invoice, as `invoice_payment.paid` carries it.
    func invoicePayment(invoice: String, intent: [String: Any]) -> [String: Any] {
        var payment = template("invoice_payment")
        payment["id"] = newID("inpay")
        payment["invoice"] = invoice
        payment["status"] = "paid"
        payment["amount_paid"] = intent["amount"]
        payment["amount_requested"] = intent["amount"]
        payment["currency"] = intent["currency"]
        payment["is_default"] = true
        payment["created"] = now
        payment["livemode"] = false
        var paid = StandInObjects.fresh("invoice_payment.Payment", example: [:], now: now)
        paid["type"] = "payment_intent"
        paid["payment_intent"] = intent["id"]
        payment["payment"] = paid
        var transitions = StandInObjects.fresh("invoice_payment.StatusTransitions", example: [:], now: now)
        transitions["paid_at"] = now
        payment["status_transitions"] = transitions
        return payment
    }

    /// The payments of an invoice as `GET /v1/invoices/:id?expand[]=payments` lists them.
    func invoicePayments(_ invoice: [String: Any]) -> [[String: Any]] {
        invoice["_payments"] as? [[String: Any]] ?? []
    }

    /// The subscription's first invoice, paid by `intent`, or for 0.00 with no payment (a trial).
    func paidInvoice(for session: [String: Any], subscription: [String: Any], intent: [String: Any]?) -> [String: Any] {
        var invoice = template("invoice")
        let id = newID("in")
        let amount = intent?["amount"] as? Int ?? 0
        invoice["id"] = id
        // Stripe numbers finalized invoices per account: a prefix, then a sequence.
        invoice["number"] = String(format: "STANDIN-%04d", count(of: "invoice") + 1)
        invoice["created"] = now
        invoice["customer"] = subscription["customer"]
        invoice["status"] = "paid"
        invoice["amount_due"] = amount
        invoice["amount_paid"] = amount
        invoice["amount_remaining"] = 0
        invoice["currency"] = intent?["currency"] ?? session["currency"] ?? "usd"
        invoice["billing_reason"] = "subscription_create"
        invoice["period_start"] = now
        invoice["period_end"] = now
        // Its payments are kept apart: Stripe sends them only when asked for (`expand[]=payments`), and says which
        // payment paid it with `invoice_payment.paid`.
        invoice["_payments"] = intent.map { [invoicePayment(invoice: id, intent: $0)] } ?? []
        invoice["parent"] = ["type": "subscription_details",
                             "subscription_details": ["subscription": subscription["id"] as Any,
                                                      "metadata": subscription["metadata"] as Any]] as [String: Any]
        invoice["livemode"] = false
        objects[id] = invoice
        return invoice
    }

    // MARK: Events and webhooks

    /// Records an event and delivers it, signed as Stripe signs, to the configured endpoint, retrying with backoff.
    func emit(_ type: String, _ object: [String: Any]) {
        var event = template("event")
        let id = newID("evt")
        event["id"] = id
        event["type"] = type
        event["created"] = now
        event["livemode"] = false
        event["api_version"] = StripeConfiguration.apiVersion
        event["data"] = ["object": Self.public(object)]
        event["pending_webhooks"] = configuration.webhookURL == nil ? 0 : 1
        event["request"] = ["id": NSNull(), "idempotency_key": NSNull()]
        events.append(event)
        if webhooksHeld { heldEvents.insert(id) }
        guard let url = configuration.webhookURL,
              let body = try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])
        else { return }
        let secret = configuration.webhookSecret
        let initial = configuration.webhookRetryInitial
        let attempts = configuration.webhookMaxAttempts
        let clock = configuration.clock
        let http = self.http
        let logger = self.logger
        // Stripe delivers each event on its own; a slow or failing endpoint delays nothing else.
        Task.detached { [weak self] in
            await self?.waitIfHeld(id)
            for attempt in 1...attempts {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
                request.headers.add(name: "User-Agent", value: "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
                request.headers.add(
                    name: "Stripe-Signature",
                    value: WebhookSignature.header(body: body, secrets: [secret], timestamp: Int(clock().timeIntervalSince1970)))
                request.body = .bytes(ByteBuffer(bytes: body))
                if let response = try? await http.execute(request, timeout: .seconds(10)), (200..<300).contains(response.status.code) {
                    await self?.markDelivered(id)
                    return
                }
                logger.notice("webhook delivery failed; retrying", metadata: ["event": "\(id)", "attempt": "\(attempt)"])
                await self?.markFailedDelivery()
                try? await Task.sleep(for: initial * (1 << min(attempt - 1, 16)))
            }
        }
    }

    func markDelivered(_ id: String) { delivered[id, default: 0] += 1 }
    func markFailedDelivery() { failedDeliveries += 1 }
}
