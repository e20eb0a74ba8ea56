import Foundation
import StripeAPI

/// The rules Stripe applies that its generated definitions cannot express (a parameter required only in one mode,
/// one allowed only with another, ...). Each quotes the sentence of Stripe's documentation (the docstrings of the
/// pinned `stripe` Python package) it follows; the README lists them. Requests reach these only after passing
/// `StripeDefinitions.check`.
enum StandInRules {
    static func check(method: String, path: String, params: [String: Any]) -> ParameterProblem? {
        switch (method, path) {
        case ("POST", "/v1/checkout/sessions"): checkoutSession(params)
        case ("POST", "/v1/payment_intents"): paymentIntent(params)
        default:
            if method == "POST", path.hasPrefix("/v1/subscriptions/") { subscriptionUpdate(params) } else { nil }
        }
    }

    static func checkoutSession(_ params: [String: Any]) -> ParameterProblem? {
        let mode = params["mode"] as? String ?? "payment"
        // line_items: "The parameter is required for `payment` and `subscription` mode."
        if mode != "setup", (params["line_items"] as? [Any])?.isEmpty ?? true {
            return missing("line_items", because: "it is required in \(mode) mode")
        }
        // currency: "Required in `setup` mode when `allowed_payment_method_types` is not set."
        if mode == "setup", params["currency"] == nil, params["allowed_payment_method_types"] == nil {
            return missing("currency", because: "it is required in setup mode when allowed_payment_method_types is not set")
        }
        return nil
    }

    static func paymentIntent(_ params: [String: Any]) -> ParameterProblem? {
        let confirming = params["confirm"] as? String == "true"
        // off_session: "This parameter can only be used with `confirm=true`."
        // return_url: "This parameter can only be used with `confirm=true`."
        for name in ["off_session", "return_url"] where params[name] != nil && !confirming {
            return ParameterProblem(code: nil, param: name, message: "\(name) can only be used with confirm=true.")
        }
        if confirming, let problem = redirects(intent: params, confirmation: params) { return problem }
        return nil
    }

    /// automatic_payment_methods[allow_redirects]: "Redirect-based payment methods may require your customer to be
    /// redirected to a payment method's app or site for authentication or additional steps. To confirm this
    /// PaymentIntent, you may be required to provide a `return_url` to redirect customers back to your site after
    /// they authenticate or complete the payment." Stripe turns automatic payment methods on when the request names no
    /// payment method types, and then refuses a confirmation without a `return_url` unless redirects are `never`.
    static func redirects(intent: [String: Any], confirmation: [String: Any]) -> ParameterProblem? {
        let automatic = intent["automatic_payment_methods"] as? [String: Any]
        let onlyCards = (intent["allowed_payment_method_types"] as? [Any]).map { $0.allSatisfy { $0 as? String == "card" } } ?? false
        let automaticOn = automatic.map { $0["enabled"] as? String != "false" && $0["enabled"] as? Bool != false } ?? !onlyCards
        let allowRedirects = automatic?["allow_redirects"] as? String ?? "always"
        let returnURL = confirmation["return_url"] ?? intent["return_url"]
        guard automaticOn, allowRedirects != "never", returnURL == nil || returnURL is NSNull else { return nil }
        return ParameterProblem(
            code: nil, param: "return_url",
            message: "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some of these payment methods might redirect your customer off of your page, you must provide a `return_url`. If you don't want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents.")
    }

    /// payment_behavior: "Use `pending_if_incomplete` to update the subscription using pending updates. When you use
    /// `pending_if_incomplete` you can only pass the parameters supported by pending updates." Those are
    /// (Stripe's pending updates guide): `billing_cycle_anchor`, `items` (price and quantity), `proration_behavior`,
    /// `proration_date`, `trial_end`, `trial_from_plan`, `add_invoice_items`, `expand`.
    static func subscriptionUpdate(_ params: [String: Any]) -> ParameterProblem? {
        guard params["payment_behavior"] as? String == "pending_if_incomplete" else { return nil }
        let supported: Set<String> = [
            "payment_behavior", "billing_cycle_anchor", "items", "proration_behavior", "proration_date", "trial_end",
            "trial_from_plan", "add_invoice_items", "expand",
        ]
        if let other = params.keys.sorted().first(where: { !supported.contains($0) }) {
            return ParameterProblem(code: nil, param: other,
                                    message: "\(other) is not supported by pending updates (payment_behavior=pending_if_incomplete); send it in an update of its own.")
        }
        return nil
    }

    static func missing(_ param: String, because reason: String) -> ParameterProblem {
        ParameterProblem(code: "parameter_missing", param: param, message: "Missing required param: \(param) (\(reason)).")
    }
}
