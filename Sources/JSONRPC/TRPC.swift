import Foundation

/// tRPC's HTTP RPC transport (v11, no data transformer) over the same method registry as JSON-RPC: one declaration
/// of a method, two transports. Queries are `GET /trpc/<path>?input=<JSON>`, mutations `POST /trpc/<path>` with the
/// input as the body; `?batch=1` with comma-joined paths takes `input` as a map from index to input and answers an
/// array (207 when the outcomes' statuses differ). A batch of more calls than `/rpc` takes (`maxBatchSize`) is one
/// BAD_REQUEST error, and nothing in it runs. Success is `{"result":{"data":...}}`; an error is
/// `{"error":{"message","code","data":{"code","httpStatus","path"}}}` with tRPC's HTTP status for its code.
public struct TRPCTransport<Context: Sendable>: Sendable {
    public let server: JSONRPCServer<Context>

    public init(server: JSONRPCServer<Context>) {
        self.server = server
    }

    public enum Verb: Sendable { case get, post }

    /// The HTTP answer: status and JSON body.
    public struct Answer: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    /// `paths` is what follows `/trpc/` (comma-joined when batched); `input` the `input` query parameter (GET) or
    /// the body (POST), nil when absent.
    public func respond(verb: Verb, paths: String, batch: Bool, input: [UInt8]?, context: Context) async -> Answer {
        let names = batch ? paths.split(separator: ",", omittingEmptySubsequences: false).map(String.init) : [paths]
        // As /rpc: a batch beyond the cap is refused whole, before any input is read or any procedure runs.
        guard names.count <= server.maxBatchSize else {
            let error = RPCError(.BAD_REQUEST, "a batch may hold at most \(server.maxBatchSize) calls (this one has \(names.count)); split it")
            return Answer(status: error.name.httpStatus, body: Self.errorBody(error, path: nil))
        }
        // The inputs, by index for a batch.
        var inputs: [JSONValue?] = Array(repeating: nil, count: names.count)
        if let input, !input.isEmpty {
            guard JSONValue.nestingDepth(of: input) <= JSONValue.maximumDepth else {
                let error = RPCError(.BAD_REQUEST, "the input nests arrays and objects deeper than \(JSONValue.maximumDepth) levels")
                return answer(names.map { _ in .failure(error) }, names: names, batch: batch)
            }
            guard let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(input)) else {
                return answer(names.map { _ in .failure(RPCError(.PARSE_ERROR, "the input is not JSON")) }, names: names, batch: batch)
            }
            if batch {
                guard case .object(let byIndex) = parsed else {
                    let error = RPCError(.BAD_REQUEST, #"a batch's input must be an object from index to input, like {"0":{...}}"#)
                    return answer(names.map { _ in .failure(error) }, names: names, batch: batch)
                }
                for (index, _) in names.enumerated() { inputs[index] = byIndex[String(index)] }
            } else {
                inputs[0] = parsed
            }
        }
        var outcomes: [Result<[UInt8], RPCError>] = []
        for (index, name) in names.enumerated() {
            outcomes.append(await call(name, verb: verb, input: inputs[index], context: context))
        }
        return answer(outcomes, names: names, batch: batch)
    }

    func call(_ name: String, verb: Verb, input: JSONValue?, context: Context) async -> Result<[UInt8], RPCError> {
        guard let method = server.registry[name] else {
            return .failure(RPCError(.NOT_FOUND, "no procedure found on path \"\(name)\""))
        }
        switch (method.kind, verb) {
        case (.query, .post):
            return .failure(RPCError(.METHOD_NOT_SUPPORTED, "\(name) is a query: send it as GET /trpc/\(name)?input=..."))
        case (.mutation, .get):
            return .failure(RPCError(.METHOD_NOT_SUPPORTED, "\(name) is a mutation: send it as POST /trpc/\(name) with the input as the body"))
        default:
            break
        }
        let params: [String: JSONValue]
        switch input {
        case nil, .null?:
            params = [:]
        case .object(let fields)?:
            params = fields
        case let other?:
            return .failure(.invalidParams(field: nil, "the input must be an object of named params, not \(other.kindDescription)"))
        }
        return await server.call(name, params: params, context: context)
    }

    public func answer(_ outcomes: [Result<[UInt8], RPCError>], names: [String], batch: Bool) -> Answer {
        var statuses: [Int] = []
        var items: [[UInt8]] = []
        for (outcome, name) in zip(outcomes, names) {
            switch outcome {
            case .success(let data):
                statuses.append(200)
                items.append(Array(#"{"result":{"data":"#.utf8) + data + Array("}}".utf8))
            case .failure(let error):
                statuses.append(error.name.httpStatus)
                items.append(Self.errorBody(error, path: name))
            }
        }
        if !batch {
            return Answer(status: statuses[0], body: items[0])
        }
        let status = Set(statuses).count == 1 ? statuses[0] : 207
        var body = Array("[".utf8)
        for (index, item) in items.enumerated() {
            if index > 0 { body += Array(",".utf8) }
            body += item
        }
        body += Array("]".utf8)
        return Answer(status: status, body: body)
    }

    /// tRPC's error shape: the JSON-RPC code of the tRPC name (invalid params are BAD_REQUEST, -32600, as tRPC
    /// has them), and in `data` the name, the HTTP status and the path, with whatever else the error carries.
    static func errorBody(_ error: RPCError, path: String?) -> [UInt8] {
        var data = error.data
        data["code"] = .string(error.name.rawValue)
        data["httpStatus"] = .integer(error.name.httpStatus)
        if let path { data["path"] = .string(path) }
        let envelope: JSONValue = ["error": [
            "message": .string(error.message), "code": .integer(error.name.jsonRPCCode), "data": .object(data),
        ]]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(envelope)) ?? Data(#"{"error":{"message":"internal error","code":-32603}}"#.utf8))
    }
}
