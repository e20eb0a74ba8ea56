import Foundation

/// Stripe's own definitions at the pinned API version, generated from Stripe's Python library by
/// `scripts/gen-stripe-definitions.py` into `Resources/stripe-definitions.json`: the endpoints the client and the
/// stand-in use with their parameters, and the fields of every resource we decode or emit.
public struct StripeDefinitions: Decodable, Sendable {
    public var apiVersion: String
    public var source: String
    public var endpoints: [Endpoint]
    /// Request parameter types by their Python class name (`SessionCreateParams`, `SessionCreateParamsLineItem`).
    public var params: [String: Shape]
    /// Resource types by object name (`subscription`), nested ones by dotted path (`subscription.PendingUpdate`).
    public var resources: [String: Shape]

    public struct Endpoint: Decodable, Sendable, Equatable {
        public var method: String
        /// Stripe's template, `/v1/customers/{customer}`.
        public var path: String
        public var params: String

        /// Whether `path` (a concrete request path) fits this template; literal segments must be equal.
        func matches(method: String, path requestPath: String) -> Bool {
            guard method == self.method else { return false }
            let want = path.split(separator: "/")
            let got = requestPath.split(separator: "/")
            guard want.count == got.count else { return false }
            return zip(want, got).allSatisfy { $0.first == "{" || $0 == $1 }
        }

        var literalSegments: Int { path.split(separator: "/").filter { $0.first != "{" }.count }
    }

    public struct Shape: Decodable, Sendable {
        public var fields: [String: FieldType]
    }

    public final class FieldType: Decodable, Sendable {
        public enum Kind: String, Decodable, Sendable {
            case string, integer, number, boolean, decimal, `enum`, object, array, map, any, expandable, list, union
        }

        public let kind: Kind
        public let values: [String]?
        public let ref: String?
        public let items: FieldType?
        /// A map's value type (`values` of the JSON when it is an object).
        public let mapValues: FieldType?
        public let of: [FieldType]?
        public let nullable: Bool
        /// May be sent as "" to unset it.
        public let emptyable: Bool
        /// Request parameters only.
        public let required: Bool

        enum CodingKeys: String, CodingKey { case kind, values, ref, items, of, nullable, emptyable, required }

        public required init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            kind = try container.decode(Kind.self, forKey: .kind)
            if kind == .map {
                mapValues = try container.decode(FieldType.self, forKey: .values)
                values = nil
            } else {
                values = try container.decodeIfPresent([String].self, forKey: .values)
                mapValues = nil
            }
            ref = try container.decodeIfPresent(String.self, forKey: .ref)
            items = try container.decodeIfPresent(FieldType.self, forKey: .items)
            of = try container.decodeIfPresent([FieldType].self, forKey: .of)
            nullable = try container.decodeIfPresent(Bool.self, forKey: .nullable) ?? false
            emptyable = try container.decodeIfPresent(Bool.self, forKey: .emptyable) ?? false
            required = try container.decodeIfPresent(Bool.self, forKey: .required) ?? false
        }
    }

    /// The definitions committed with this build.
    public static let pinned: StripeDefinitions = {
        guard let url = Bundle.module.url(forResource: "stripe-definitions", withExtension: "json") else {
            fatalError("stripe-definitions.json is missing from the StripeAPI bundle")
        }
        do {
            return try JSONDecoder().decode(StripeDefinitions.self, from: Data(contentsOf: url))
        } catch {
            fatalError("stripe-definitions.json does not decode: \(error)")
        }
    }()

    /// The endpoint a request goes to; a literal segment wins over a placeholder (`invoices/upcoming` over
    /// `invoices/{invoice}`).
    public func endpoint(method: String, path: String) -> Endpoint? {
        endpoints.filter { $0.matches(method: method, path: path) }.max { $0.literalSegments < $1.literalSegments }
    }
}

/// Why Stripe would refuse a request's parameters: its error code, the parameter in bracket notation, and a message
/// in Stripe's words.
public struct ParameterProblem: Error, Sendable, Equatable, CustomStringConvertible {
    /// `parameter_unknown`, `parameter_missing`, `parameter_invalid_integer`, `parameter_invalid_empty`; nil where
    /// Stripe sends none (an enum value or boolean it does not accept).
    public var code: String?
    public var param: String
    public var message: String

    public init(code: String?, param: String, message: String) {
        self.code = code
        self.param = param
        self.message = message
    }

    public var description: String { "\(code ?? "invalid") \(param): \(message)" }
}

/// A form body as a tree: `line_items[0][price]=x` is `line_items` > `0` > `price` = x; `expand[]` appends.
public indirect enum FormNode: Sendable, Equatable {
    case value(String)
    case children([(String, FormNode)])

    public static func == (lhs: FormNode, rhs: FormNode) -> Bool {
        switch (lhs, rhs) {
        case (.value(let a), .value(let b)): a == b
        case (.children(let a), .children(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// The pairs of a form body, nested.
    public static func tree(_ pairs: [(String, String)]) -> [(String, FormNode)] {
        var root: [(String, FormNode)] = []
        for (key, value) in pairs { insert(&root, path: FormNode.path(of: key), value: value) }
        return root
    }

    /// `a[b][0]` -> ["a", "b", "0"]; `expand[]` -> ["expand", ""].
    public static func path(of key: String) -> [String] {
        guard let open = key.firstIndex(of: "[") else { return [key] }
        var parts = [String(key[..<open])]
        var rest = key[open...]
        while let start = rest.firstIndex(of: "["), let end = rest[start...].firstIndex(of: "]") {
            parts.append(String(rest[rest.index(after: start)..<end]))
            rest = rest[rest.index(after: end)...]
        }
        return parts
    }

    static func insert(_ children: inout [(String, FormNode)], path: [String], value: String) {
        guard let head = path.first else { return }
        if path.count == 1 {
            if head.isEmpty { children.append((String(children.count), .value(value))) } else {
                children.removeAll { $0.0 == head }
                children.append((head, .value(value)))
            }
            return
        }
        let key = head.isEmpty ? String(children.count) : head
        var nested: [(String, FormNode)] = []
        if let index = children.firstIndex(where: { $0.0 == key }), case .children(let existing) = children[index].1 {
            nested = existing
            children.remove(at: index)
        }
        insert(&nested, path: Array(path.dropFirst()), value: value)
        children.append((key, .children(nested)))
    }
}

extension StripeDefinitions {
    /// Checks a request's parameters as Stripe checks them against its definitions: nil when they are acceptable,
    /// or the first problem. An endpoint it does not know is `nil` here (the caller answers 404).
    public func check(method: String, path: String, pairs: [(String, String)]) -> ParameterProblem? {
        guard let endpoint = endpoint(method: method, path: path), let shape = params[endpoint.params] else { return nil }
        return check(.children(FormNode.tree(pairs)), shape: shape, prefix: nil)
    }

    func check(_ node: FormNode, shape: Shape, prefix: String?) -> ParameterProblem? {
        func name(_ key: String) -> String { prefix.map { "\($0)[\(key)]" } ?? key }
        guard case .children(let children) = node else {
            return ParameterProblem(code: nil, param: prefix ?? "", message: "Invalid object")
        }
        for (key, child) in children {
            guard let type = shape.fields[key] else {
                return ParameterProblem(code: "parameter_unknown", param: name(key), message: "Received unknown parameter: \(name(key))")
            }
            if let problem = check(child, type: type, param: name(key)) { return problem }
        }
        let present = Set(children.map(\.0))
        for (key, type) in shape.fields.sorted(by: { $0.key < $1.key }) where type.required && !present.contains(key) {
            return ParameterProblem(code: "parameter_missing", param: name(key), message: "Missing required param: \(name(key)).")
        }
        return nil
    }

    func check(_ node: FormNode, type: FieldType, param: String) -> ParameterProblem? {
        if case .value("") = node, type.emptyable { return nil }
        // "" asks Stripe to unset a parameter; one that cannot be unset is refused, not taken as a value.
        if case .value("") = node, type.kind != .any, type.kind != .map {
            return ParameterProblem(
                code: "parameter_invalid_empty", param: param,
                message: "You passed an empty string for '\(param)'. We assume empty values are an attempt to unset a parameter; however '\(param)' cannot be unset. You should remove '\(param)' from your request or supply a non-empty value.")
        }
        switch type.kind {
        case .any:
            return nil
        case .string, .decimal:
            guard case .value = node else { return ParameterProblem(code: nil, param: param, message: "Invalid string: expected a string for \(param)") }
            return nil
        case .integer:
            guard case .value(let text) = node, Int(text) != nil else {
                return ParameterProblem(code: "parameter_invalid_integer", param: param, message: "Invalid integer: \(node.text)")
            }
            return nil
        case .number:
            guard case .value(let text) = node, Double(text) != nil else {
                return ParameterProblem(code: nil, param: param, message: "Invalid decimal: \(node.text)")
            }
            return nil
        case .boolean:
            guard case .value(let text) = node, text == "true" || text == "false" else {
                return ParameterProblem(code: nil, param: param, message: "Invalid boolean: \(node.text)")
            }
            return nil
        case .enum:
            let allowed = type.values ?? []
            guard case .value(let text) = node, allowed.contains(text) else {
                return ParameterProblem(code: nil, param: param,
                                        message: "Invalid \(param): must be one of \(Self.listed(allowed))")
            }
            return nil
        case .object:
            guard let ref = type.ref, let shape = params[ref] else { return nil }
            return check(node, shape: shape, prefix: param)
        case .map:
            if case .value("") = node { return nil }  // "All keys can be unset by posting an empty value to `metadata`."
            guard case .children(let children) = node else {
                return ParameterProblem(code: nil, param: param, message: "Invalid hash: \(param) must be a hash")
            }
            guard let values = type.mapValues else { return nil }
            for (key, child) in children {
                if let problem = check(child, type: values, param: "\(param)[\(key)]") { return problem }
            }
            return nil
        case .array:
            guard case .children(let children) = node, children.allSatisfy({ Int($0.0) != nil }) else {
                return ParameterProblem(code: nil, param: param, message: "Invalid array: \(param) must be an array")
            }
            guard let items = type.items else { return nil }
            for (index, child) in children {
                if let problem = check(child, type: items, param: "\(param)[\(index)]") { return problem }
            }
            return nil
        case .union:
            let options = type.of ?? []
            var first: ParameterProblem?
            for option in options {
                guard let problem = check(node, type: option, param: param) else { return nil }
                first = first ?? problem
            }
            return first
        case .expandable, .list:
            return ParameterProblem(code: nil, param: param, message: "\(param) is not a request parameter")
        }
    }

    static func listed(_ values: [String]) -> String {
        guard values.count > 1 else { return values.first ?? "" }
        return values.dropLast().joined(separator: ", ") + ", or " + values.last!
    }
}

extension FormNode {
    var text: String {
        switch self {
        case .value(let text): text
        case .children: "a hash"
        }
    }
}
