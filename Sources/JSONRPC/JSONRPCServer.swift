import Foundation

/// Answers JSON-RPC 2.0 bodies: single requests, batches and notifications, per the specification.
public struct JSONRPCServer<Context: Sendable>: Sendable {
    public let registry: MethodRegistry<Context>
    /// Told of every executed call: method, the error if any, and how long it took.
    public var observe: (@Sendable (String, RPCError?, Duration) -> Void)?
    /// Told of failures that are not RPCErrors (they become -32603 for the client).
    public var reportInternal: (@Sendable (String, any Error, Context) -> Void)?
    /// Larger batches are refused as a whole, so one request cannot hold a worker for long.
    public var maxBatchSize: Int
    /// Checked on every call's params before its method runs.
    public var limits: InputLimits

    public init(registry: MethodRegistry<Context>, maxBatchSize: Int = 100, limits: InputLimits = .none) {
        self.registry = registry
        self.maxBatchSize = maxBatchSize
        self.limits = limits
    }

    /// The params as the method gets them, once within `limits`.
    func bounded(_ params: RPCParams) throws(RPCError) -> RPCParams {
        if let problem = limits.problem(in: params.fields) { throw problem }
        return params
    }

    /// What to send back: a body, or nothing at all (HTTP 204) when every request was a notification.
    public enum Reply: Sendable, Equatable {
        case body([UInt8])
        case none
    }

    public func respond(to body: some Collection<UInt8> & Sendable, context: Context) async -> Reply {
        guard JSONValue.nestingDepth(of: body) <= JSONValue.maximumDepth else {
            return .body(Self.encode(.failure(
                .invalidRequest("the body nests arrays and objects deeper than \(JSONValue.maximumDepth) levels"), id: .null)))
        }
        let document: JSONValue
        do {
            document = try JSONDecoder().decode(JSONValue.self, from: Data(body))
        } catch {
            return .body(Self.encode(.failure(.parseError("the body is not valid JSON"), id: .null)))
        }
        switch document {
        case .array(let entries):
            guard !entries.isEmpty else {
                return .body(Self.encode(.failure(.invalidRequest("an empty batch holds no request"), id: .null)))
            }
            guard entries.count <= maxBatchSize else {
                return .body(Self.encode(.failure(
                    .invalidRequest("a batch may hold at most \(maxBatchSize) requests; split it"), id: .null)))
            }
            var parts: [[UInt8]] = []
            for entry in entries {
                if let response = await answer(entry, context: context) {
                    parts.append(Self.encode(response))
                }
            }
            guard !parts.isEmpty else { return .none }
            var out: [UInt8] = [UInt8(ascii: "[")]
            for (index, part) in parts.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: part)
            }
            out.append(UInt8(ascii: "]"))
            return .body(out)
        default:
            guard let response = await answer(document, context: context) else { return .none }
            return .body(Self.encode(response))
        }
    }

    /// One entry: nil for a notification (executed, never answered).
    func answer(_ entry: JSONValue, context: Context) async -> Response? {
        let request: Request
        switch Request.parse(entry) {
        case .success(let parsed): request = parsed
        case .failure(let error): return .failure(error, id: .null)
        }
        let started = ContinuousClock.now
        var failure: RPCError?
        var result: [UInt8] = []
        if let method = registry[request.method] {
            do {
                let value = try await method.handler(try bounded(try request.params.named(for: method)), context)
                result = try Self.encodeResult(value)
            } catch let error as RPCError {
                failure = error
            } catch {
                reportInternal?(request.method, error, context)
                failure = .internalError
            }
            observe?(request.method, failure, ContinuousClock.now - started)
        } else {
            failure = .methodNotFound(request.method)
        }
        guard let id = request.id else { return nil }
        if let failure { return .failure(failure, id: id) }
        return .success(result, id: id)
    }

    /// One call of a method by name with named params, outside any JSON-RPC envelope (the tRPC transport): the
    /// encoded result, or the error. Observed and reported as `/rpc` calls are.
    public func call(_ name: String, params: [String: JSONValue], context: Context) async -> Result<[UInt8], RPCError> {
        guard let method = registry[name] else { return .failure(.methodNotFound(name)) }
        let started = ContinuousClock.now
        let outcome: Result<[UInt8], RPCError>
        do {
            outcome = .success(try Self.encodeResult(try await method.handler(try bounded(RPCParams(fields: params)), context)))
        } catch let error as RPCError {
            outcome = .failure(error)
        } catch {
            reportInternal?(name, error, context)
            outcome = .failure(.internalError)
        }
        if case .failure(let error) = outcome { observe?(name, error, ContinuousClock.now - started) } else {
            observe?(name, nil, ContinuousClock.now - started)
        }
        return outcome
    }

    static func encodeResult(_ value: any Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .withoutEscapingSlashes
        return Array(try encoder.encode(value))
    }

    enum Response {
        case success([UInt8], id: JSONValue)
        case failure(RPCError, id: JSONValue)
    }

    static func encode(_ response: Response) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        var out = Array(#"{"jsonrpc":"2.0","#.utf8)
        let id: JSONValue
        switch response {
        case .success(let result, let responseID):
            out += Array(#""result":"#.utf8)
            out += result
            id = responseID
        case .failure(let error, let responseID):
            out += Array(#""error":"#.utf8)
            out += (try? Array(encoder.encode(error))) ?? Array(#"{"code":-32603,"message":"Internal error"}"#.utf8)
            id = responseID
        }
        out += Array(#","id":"#.utf8)
        out += (try? Array(encoder.encode(id))) ?? Array("null".utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A whole-body error (payload too large, wrong content type) shaped as a JSON-RPC response with `id: null`.
    public static func errorBody(_ error: RPCError) -> [UInt8] {
        encode(.failure(error, id: .null))
    }
}

/// A request object after validation.
struct Request {
    var method: String
    /// nil: a notification. `.null` is a request whose id is null, which is answered.
    var id: JSONValue?
    var params: Params

    enum Params {
        case named([String: JSONValue])
        case positional([JSONValue])

        /// Positional params take the names the method gives them; a method without names takes none.
        func named<Context>(for method: RPCMethod<Context>) throws(RPCError) -> RPCParams {
            switch self {
            case .named(let fields):
                return RPCParams(fields: fields)
            case .positional(let items):
                if items.isEmpty { return RPCParams() }
                guard let names = method.positionalParams else {
                    throw .invalidParams(field: nil, "\(method.name) takes named params: send params as an object")
                }
                guard items.count <= names.count else {
                    throw .invalidParams(
                        field: nil, "\(method.name) takes at most \(names.count) positional params (\(names.joined(separator: ", ")))")
                }
                return RPCParams(fields: Dictionary(uniqueKeysWithValues: zip(names, items)))
            }
        }
    }

    static func parse(_ entry: JSONValue) -> Result<Request, RPCError> {
        guard case .object(let object) = entry else {
            return .failure(.invalidRequest("expected a request object, got \(entry.kindDescription)"))
        }
        guard object["jsonrpc"] == .string("2.0") else {
            return .failure(.invalidRequest("'jsonrpc' must be exactly \"2.0\""))
        }
        guard case .string(let method)? = object["method"] else {
            return .failure(.invalidRequest("'method' must be a string"))
        }
        let id = object["id"]
        switch id {
        case nil, .null?, .string?, .integer?, .double?: break
        default: return .failure(.invalidRequest("'id' must be a string, a number or null"))
        }
        let params: Params
        switch object["params"] {
        case nil:
            params = .named([:])
        case .object(let fields)?:
            params = .named(fields)
        case .array(let items)?:
            params = .positional(items)
        default:
            return .failure(.invalidRequest("'params' must be an object or an array"))
        }
        return .success(Request(method: method, id: id, params: params))
    }
}

