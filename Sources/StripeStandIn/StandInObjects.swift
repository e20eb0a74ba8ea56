import Foundation
import StripeAPI

/// New objects in the shape Stripe sends at the pinned version: every field of the resource's definition, and no
/// example value left over. Nullable fields start null, the rest take the example's value (timestamps made current,
/// nested objects built the same way) or an empty value of their type; the stand-in then fills in what it knows.
enum StandInObjects {
    /// Fields Stripe leaves out unless asked for with `expand[]` (its API reference marks them "includable"):
    /// never in a webhook.
    static let includable: [String: Set<String>] = [
        "invoice": ["payments"], "charge": ["refunds"], "checkout.session": ["line_items"],
        "customer": ["cash_balance", "invoice_credit_balance", "sources", "subscriptions", "tax_ids"],
    ]

    /// The timestamp Stripe's example objects carry everywhere.
    static let exampleTimestamp = 1_234_567_890

    static func fresh(_ shape: String, example: [String: Any], now: Int,
                      definitions: StripeDefinitions = .pinned) -> [String: Any] {
        guard let fields = definitions.resources[shape]?.fields else { return example }
        var object: [String: Any] = [:]
        for (name, type) in fields where !(includable[shape]?.contains(name) ?? false) {
            object[name] = value(type, example: example[name], now: now, definitions: definitions)
        }
        return object
    }

    static func value(_ type: StripeDefinitions.FieldType, example: Any?, now: Int, definitions: StripeDefinitions) -> Any {
        if type.nullable { return NSNull() }
        switch type.kind {
        case .object:
            let nested = example as? [String: Any] ?? [:]
            guard let ref = type.ref, definitions.resources[ref] != nil else { return example ?? [:] as [String: Any] }
            return fresh(ref, example: nested, now: now, definitions: definitions)
        case .list:
            return ["object": "list", "data": [] as [Any], "has_more": false, "url": ""] as [String: Any]
        case .array:
            return [] as [Any]
        case .map:
            return [:] as [String: Any]
        case .integer:
            // Only the example's timestamps mean anything here (made current); its amounts and counts are leftovers.
            if let number = example as? Int, number == exampleTimestamp { return now }
            return 0
        case .boolean:
            return example as? Bool ?? false
        case .enum:
            if let text = example as? String, type.values?.contains(text) == true { return text }
            return type.values?.first ?? ""
        case .number:
            return example ?? 0
        case .string, .decimal, .expandable, .any, .union:
            return example ?? ""
        }
    }
}
