import Foundation

extension StandInState {
    public struct PortalView: Sendable {
        public struct Line: Sendable {
            public var subscriptionID: String
            public var itemID: String
            public var status: String
            public var priceID: String
            public var productName: String
            public var quantity: Int
            public var cancelAtPeriodEnd: Bool
        }
        public var id: String
        public var returnURL: String?
        public var subscriptions: [Line]
        /// Recurring prices a subscription can switch to.
        public var prices: [StandInPrice]
    }

    public func portalView(_ id: String) -> PortalView? {
        guard let session = objects[id], session["object"] as? String == "billing_portal.session",
              let customer = session["customer"] as? String
        else { return nil }
        let lines = objects.values
            .filter { $0["object"] as? String == "subscription" && $0["customer"] as? String == customer }
            .sorted { ($0["created"] as? Int ?? 0) < ($1["created"] as? Int ?? 0) }
            .compactMap { subscription -> PortalView.Line? in
                guard let item = ((subscription["items"] as? [String: Any])?["data"] as? [[String: Any]])?.first,
                      let priceID = (item["price"] as? [String: Any])?["id"] as? String
                else { return nil }
                return PortalView.Line(
                    subscriptionID: subscription["id"] as? String ?? "", itemID: item["id"] as? String ?? "",
                    status: subscription["status"] as? String ?? "", priceID: priceID,
                    productName: price(priceID)?.productName ?? priceID, quantity: item["quantity"] as? Int ?? 1,
                    cancelAtPeriodEnd: subscription["cancel_at_period_end"] as? Bool ?? false)
            }
        return PortalView(
            id: id, returnURL: session["return_url"] as? String, subscriptions: lines,
            prices: configuration.prices.filter { $0.interval != nil })
    }

    /// What the portal's forms do: `seats` (quantity), `price` (switch plan), `cancel` and `renew` (at period end),
    /// each through the same update path as the API, so each emits `customer.subscription.updated`.
    public func portalAction(_ id: String, action: String, subscription: String, value: String?) -> String {
        onClock(of: objects[id]?["customer"] as? String) { portalChange(id, action: action, subscription: subscription, value: value) }
    }

    func portalChange(_ id: String, action: String, subscription: String, value: String?) -> String {
        guard let view = portalView(id), let line = view.subscriptions.first(where: { $0.subscriptionID == subscription }) else {
            return "No such subscription in this portal session."
        }
        let params: [String: Any]
        switch action {
        case "seats":
            guard let quantity = value.flatMap(Int.init), quantity >= 1 else { return "Enter a number of seats of 1 or more." }
            params = ["items": [["id": line.itemID, "quantity": String(quantity)]], "proration_behavior": "create_prorations"]
        case "price":
            guard let priceID = value, price(priceID) != nil else { return "Choose one of the listed plans." }
            params = ["items": [["id": line.itemID, "price": priceID]], "proration_behavior": "create_prorations"]
        case "cancel":
            params = ["cancel_at_period_end": "true"]
        case "renew":
            params = ["cancel_at_period_end": "false"]
        case "downgrade":
            // The portal's "change at the end of the period": a subscription schedule.
            guard let priceID = value else { return "Choose one of the listed plans." }
            return scheduleChange(subscription, to: priceID) ?? "Saved: the change takes effect at the end of the period."
        default:
            return "Unknown action."
        }
        let response = updateSubscription(subscription, params)
        guard response.status == 200 else {
            let error = (try? JSONSerialization.jsonObject(with: response.body) as? [String: Any])?["error"] as? [String: Any]
            return error?["message"] as? String ?? "The change failed."
        }
        return "Saved."
    }
}
