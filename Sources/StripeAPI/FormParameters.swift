/// Stripe's request parameters: form fields whose nesting is spelled in bracket notation
/// (`metadata[tenant_id]`, `line_items[0][price_data][unit_amount]`). Order is kept so bodies are deterministic.
public indirect enum FormValue: Sendable, Equatable {
    case string(String)
    case list([FormValue])
    case fields([(String, FormValue)])

    public static func == (lhs: FormValue, rhs: FormValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): a == b
        case (.list(let a), .list(let b)): a == b
        case (.fields(let a), .fields(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }
}

extension FormValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .string(String(value)) }
    public init(booleanLiteral value: Bool) { self = .string(value ? "true" : "false") }
    public init(arrayLiteral elements: FormValue...) { self = .list(elements) }
    public init(dictionaryLiteral elements: (String, FormValue)...) { self = .fields(elements) }

    public static func int(_ value: Int) -> FormValue { .string(String(value)) }
    public static func bool(_ value: Bool) -> FormValue { .string(value ? "true" : "false") }
}

/// The top level of a request's parameters.
public struct FormParameters: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(String, FormValue)]

    public init(_ fields: [(String, FormValue)] = []) { self.fields = fields }
    public init(dictionaryLiteral elements: (String, FormValue)...) { self.fields = elements }

    public static func == (lhs: FormParameters, rhs: FormParameters) -> Bool {
        FormValue.fields(lhs.fields) == FormValue.fields(rhs.fields)
    }

    public var isEmpty: Bool { fields.isEmpty }

    /// Sets `name`, replacing an earlier value of the same name.
    public subscript(name: String) -> FormValue? {
        get { fields.first { $0.0 == name }?.1 }
        set {
            fields.removeAll { $0.0 == name }
            if let newValue { fields.append((name, newValue)) }
        }
    }

    /// The flattened pairs: `("metadata[tenant_id]", "…")`, `("expand[0]", "…")`.
    public var pairs: [(String, String)] {
        var out: [(String, String)] = []
        func flatten(_ prefix: String, _ value: FormValue) {
            switch value {
            case .string(let text): out.append((prefix, text))
            case .list(let items):
                for (index, item) in items.enumerated() { flatten("\(prefix)[\(index)]", item) }
            case .fields(let fields):
                for (key, item) in fields { flatten("\(prefix)[\(key)]", item) }
            }
        }
        for (key, value) in fields { flatten(key, value) }
        return out
    }

    /// `application/x-www-form-urlencoded`, every byte outside RFC 3986's unreserved set percent-encoded (brackets too,
    /// as Stripe's own libraries send them).
    public var encoded: String {
        pairs.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%"
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0f)]))
            }
        }
        return out
    }

    /// Parses a form body back into pairs (for the stand-in and tests).
    public static func decodePairs(_ body: String) -> [(String, String)] {
        body.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = unescape(String(parts[0]))
            let value = parts.count > 1 ? unescape(String(parts[1])) : ""
            return (key, value)
        }
    }

    static func unescape(_ text: String) -> String {
        let plus = text.replacingOccurrences(of: "+", with: " ")
        return plus.removingPercentEncoding ?? plus
    }
}

import Foundation
