import Foundation

/// A method's params as sent: an object of named params, or nothing.
public struct RPCParams: Sendable {
    public private(set) var fields: [String: JSONValue]

    public init(fields: [String: JSONValue] = [:]) {
        self.fields = fields
    }

    /// Takes a param out before the rest is decoded (the tenant a cross-tenant caller names, for example).
    public mutating func remove(_ name: String) -> JSONValue? {
        fields.removeValue(forKey: name)
    }

    /// Decodes the params into `P`; a missing, mistyped or unknown field is an invalid-params error naming it.
    public func decode<P: Decodable>(_ type: P.Type) throws(RPCError) -> P {
        let value: P
        do {
            let data = try JSONEncoder().encode(JSONValue.object(fields))
            value = try JSONDecoder().decode(P.self, from: data)
        } catch let error as DecodingError {
            throw Self.invalidParams(error)
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError.invalidParams(field: nil, "params could not be read")
        }
        // A field the method does not know is refused: a typo must not be silently ignored.
        let known = Set(Mirror(reflecting: value).children.compactMap { $0.label.map(Self.codingName) })
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            let allowed = known.isEmpty ? "this method takes no params" : "allowed: \(known.sorted().joined(separator: ", "))"
            throw RPCError.invalidParams(field: unknown, "unknown param '\(unknown)'; \(allowed)")
        }
        return value
    }

    /// Stored properties named `fooID` decode from `fooId` (our CodingKeys spell JSON names that way).
    private static func codingName(_ label: String) -> String {
        label.hasSuffix("ID") ? String(label.dropLast(2)) + "Id" : label
    }

    static func invalidParams(_ error: DecodingError) -> RPCError {
        func path(_ keys: [any CodingKey]) -> String {
            var text = ""
            for key in keys {
                if let index = key.intValue { text += "[\(index)]" } else { text += text.isEmpty ? key.stringValue : ".\(key.stringValue)" }
            }
            return text
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return .invalidParams(field: field, "missing required param '\(field)'")
        case .valueNotFound(let type, let context):
            let field = path(context.codingPath)
            return .invalidParams(field: field, "'\(field)' must be \(typeName(type)), not null")
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            return .invalidParams(field: field, "'\(field)' must be \(typeName(type))")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            return .invalidParams(field: field.isEmpty ? nil : field, "'\(field)' \(context.debugDescription)")
        @unknown default:
            return .invalidParams(field: nil, "params could not be read")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        default: "a valid value"
        }
    }
}

/// For methods that take no params: any field sent is an unknown param.
public struct NoParams: Decodable, Sendable {
    public init() {}
}
