import Foundation
import StripeAPI

/// Turns Stripe's bracket-notation form fields back into nested dictionaries and arrays
/// (`line_items[0][price]` -> `["line_items": [["price": ...]]]`).
enum FormDecoding {
    static func decode(_ body: String) -> [String: Any] {
        var root: [String: Any] = [:]
        for (key, value) in FormParameters.decodePairs(body) {
            insert(&root, path: path(of: key), value: value)
        }
        return arrays(root) as? [String: Any] ?? [:]
    }

    /// `a[b][0]` -> ["a", "b", "0"]
    static func path(of key: String) -> [String] {
        guard let open = key.firstIndex(of: "[") else { return [key] }
        var parts = [String(key[..<open])]
        var rest = key[open...]
        while let start = rest.firstIndex(of: "["), let end = rest[start...].firstIndex(of: "]") {
            parts.append(String(rest[rest.index(after: start)..<end]))
            rest = rest[rest.index(after: end)...]
        }
        return parts
    }

    static func insert(_ object: inout [String: Any], path: [String], value: String) {
        guard let head = path.first else { return }
        if path.count == 1 {
            object[head] = value
            return
        }
        var child = object[head] as? [String: Any] ?? [:]
        insert(&child, path: Array(path.dropFirst()), value: value)
        object[head] = child
    }

    /// Dictionaries whose keys are all indices become arrays, in index order.
    static func arrays(_ value: Any) -> Any {
        guard let object = value as? [String: Any] else { return value }
        let converted = object.mapValues(arrays)
        if !converted.isEmpty, converted.keys.allSatisfy({ Int($0) != nil }) {
            return converted.sorted { Int($0.key)! < Int($1.key)! }.map(\.value)
        }
        return converted
    }
}
