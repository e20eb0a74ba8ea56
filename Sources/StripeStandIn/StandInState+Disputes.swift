import Foundation

extension StandInState {
    /// A charge paid with `pm_card_createDispute` (4000 0000 0000 0259) is disputed as soon as it succeeds: the
    /// dispute, for the whole amount, needs a response, and its funds are withdrawn. Returns its events, not yet sent.
    func dispute(_ charge: [String: Any], paymentMethod: String?) -> [(String, [String: Any])] {
        guard TestCard(paymentMethod) == .disputes, let chargeID = charge["id"] as? String else { return [] }
        var dispute = template("dispute")
        dispute["id"] = newID("dp")
        dispute["created"] = now
        dispute["amount"] = charge["amount"]
        dispute["currency"] = charge["currency"]
        dispute["charge"] = chargeID
        dispute["payment_intent"] = charge["payment_intent"] ?? NSNull()
        dispute["status"] = "needs_response"
        dispute["reason"] = "fraudulent"
        dispute["is_charge_refundable"] = false
        dispute["livemode"] = false
        dispute["metadata"] = [:] as [String: Any]
        var details = dispute["evidence_details"] as? [String: Any] ?? [:]
        details["due_by"] = now + 7 * 86400
        details["has_evidence"] = false
        details["past_due"] = false
        details["submission_count"] = 0
        dispute["evidence_details"] = details
        objects[dispute["id"] as! String] = dispute
        objects[chargeID]?["disputed"] = true
        return [("charge.dispute.created", dispute), ("charge.dispute.funds_withdrawn", dispute)]
    }

    /// Decides a dispute, as Stripe does once the evidence is judged (in test mode, by the evidence submitted:
    /// `winning_evidence` or `losing_evidence`): `won` reinstates the funds, `lost` keeps them withdrawn.
    public func closeDispute(_ id: String, won: Bool) -> StandInResponse {
        guard var dispute = objects[id], dispute["object"] as? String == "dispute" else { return Self.noSuch("dispute", id, param: "id") }
        guard ["needs_response", "under_review", "warning_needs_response", "warning_under_review"].contains(dispute["status"] as? String ?? "") else {
            return Self.error(400, type: "invalid_request_error", message: "Dispute \(id) is \(dispute["status"] as? String ?? "closed") already.")
        }
        return onClock(of: dispute["charge"] as? String) {
            dispute["status"] = won ? "won" : "lost"
            objects[id] = dispute
            emit("charge.dispute.closed", dispute)
            if won { emit("charge.dispute.funds_reinstated", dispute) }
            return Self.json(dispute)
        }
    }
}
