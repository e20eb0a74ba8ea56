import Foundation
import StripeAPI

/// Turns Stripe's bracket-notation form fields back into nested dictionaries and arrays
/// (`line_items[0][price]` -> `["line_items": [["price": ...]]]`, `expand[]=a` -> `["expand": ["a"]]`).
enum FormDecoding {
    static func decode(_ body: String) -> [String: Any] {
        object(FormNode.tree(FormParameters.decodePairs(body)))
    }

    static func object(_ children: [(String, FormNode)]) -> [String: Any] {
        var out: [String: Any] = [:]
        for (key, node) in children { out[key] = value(node) }
        return out
    }

    /// Children whose keys are all indices become arrays, in index order.
    static func value(_ node: FormNode) -> Any {
        switch node {
        case .value(let text):
            return text
        case .children(let children):
            if !children.isEmpty, children.allSatisfy({ Int($0.0) != nil }) {
                return children.sorted { Int($0.0)! < Int($1.0)! }.map { value($0.1) }
            }
            return object(children)
        }
    }
}
