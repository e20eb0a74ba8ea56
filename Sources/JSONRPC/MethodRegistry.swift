/// Queries read, mutations change; the tRPC transport serves the first over GET and the second over POST.
public enum MethodKind: String, Sendable, Codable {
    case query, mutation
}

/// One callable method: its name, its kind, who may call it (as names, for documents), and its handler.
public struct RPCMethod<Context: Sendable>: Sendable {
    public let name: String
    public let kind: MethodKind
    /// Names of the roles that may call it; empty means anyone, without a token.
    public let roles: [String]
    /// Names given to positional params, in order; nil when the method takes named params only.
    public let positionalParams: [String]?
    public let handler: @Sendable (RPCParams, Context) async throws -> any Encodable & Sendable
}

/// The methods a server answers, by name. Adding a method is one `register` call.
public struct MethodRegistry<Context: Sendable>: Sendable {
    public private(set) var methods: [String: RPCMethod<Context>] = [:]

    public init() {}

    public mutating func register(
        _ name: String, kind: MethodKind, roles: [String], positionalParams: [String]? = nil,
        handler: @escaping @Sendable (RPCParams, Context) async throws -> any Encodable & Sendable
    ) {
        precondition(methods[name] == nil, "method \(name) is registered twice")
        methods[name] = RPCMethod(
            name: name, kind: kind, roles: roles, positionalParams: positionalParams, handler: handler)
    }

    /// Registers a method whose params decode into `P` and whose result encodes from `R`.
    public mutating func register<P: Decodable & Sendable, R: Encodable & Sendable>(
        _ name: String, kind: MethodKind, roles: [String] = [], positionalParams: [String]? = nil,
        params: P.Type = P.self,
        _ body: @escaping @Sendable (P, Context) async throws -> R
    ) {
        register(name, kind: kind, roles: roles, positionalParams: positionalParams) { raw, context in
            try await body(try raw.decode(P.self), context)
        }
    }

    public subscript(name: String) -> RPCMethod<Context>? { methods[name] }
}
