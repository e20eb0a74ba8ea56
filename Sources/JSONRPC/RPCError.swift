/// tRPC's error names, with their JSON-RPC codes and HTTP statuses (tRPC's own table).
public enum ErrorCode: String, Sendable, CaseIterable, Codable {
    case PARSE_ERROR, BAD_REQUEST, UNAUTHORIZED, PAYMENT_REQUIRED, FORBIDDEN, NOT_FOUND
    case METHOD_NOT_SUPPORTED, TIMEOUT, CONFLICT, PRECONDITION_FAILED, PAYLOAD_TOO_LARGE
    case UNSUPPORTED_MEDIA_TYPE, UNPROCESSABLE_CONTENT, TOO_MANY_REQUESTS, CLIENT_CLOSED_REQUEST
    case INTERNAL_SERVER_ERROR, NOT_IMPLEMENTED, BAD_GATEWAY, SERVICE_UNAVAILABLE, GATEWAY_TIMEOUT

    public var jsonRPCCode: Int {
        switch self {
        case .PARSE_ERROR: -32700
        case .BAD_REQUEST: -32600
        case .UNAUTHORIZED: -32001
        case .PAYMENT_REQUIRED: -32002
        case .FORBIDDEN: -32003
        case .NOT_FOUND: -32004
        case .METHOD_NOT_SUPPORTED: -32005
        case .TIMEOUT: -32008
        case .CONFLICT: -32009
        case .PRECONDITION_FAILED: -32012
        case .PAYLOAD_TOO_LARGE: -32013
        case .UNSUPPORTED_MEDIA_TYPE: -32015
        case .UNPROCESSABLE_CONTENT: -32022
        case .TOO_MANY_REQUESTS: -32029
        case .CLIENT_CLOSED_REQUEST: -32099
        case .INTERNAL_SERVER_ERROR, .NOT_IMPLEMENTED, .BAD_GATEWAY, .SERVICE_UNAVAILABLE, .GATEWAY_TIMEOUT: -32603
        }
    }

    public var httpStatus: Int {
        switch self {
        case .PARSE_ERROR, .BAD_REQUEST: 400
        case .UNAUTHORIZED: 401
        case .PAYMENT_REQUIRED: 402
        case .FORBIDDEN: 403
        case .NOT_FOUND: 404
        case .METHOD_NOT_SUPPORTED: 405
        case .TIMEOUT: 408
        case .CONFLICT: 409
        case .PRECONDITION_FAILED: 412
        case .PAYLOAD_TOO_LARGE: 413
        case .UNSUPPORTED_MEDIA_TYPE: 415
        case .UNPROCESSABLE_CONTENT: 422
        case .TOO_MANY_REQUESTS: 429
        case .CLIENT_CLOSED_REQUEST: 499
        case .INTERNAL_SERVER_ERROR: 500
        case .NOT_IMPLEMENTED: 501
        case .BAD_GATEWAY: 502
        case .SERVICE_UNAVAILABLE: 503
        case .GATEWAY_TIMEOUT: 504
        }
    }
}

/// A JSON-RPC error object. `data.code` always carries the tRPC name, so clients of either protocol branch on one field.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: [String: JSONValue]

    public var name: ErrorCode {
        data["code"]?.stringValue.flatMap(ErrorCode.init(rawValue:)) ?? .INTERNAL_SERVER_ERROR
    }

    public var description: String { "\(name.rawValue) (\(code)): \(message)" }

    public init(code: Int, name: ErrorCode, message: String, data: [String: JSONValue] = [:]) {
        self.code = code
        self.message = message
        self.data = data.merging(["code": .string(name.rawValue)]) { _, new in new }
    }

    /// An application error: tRPC's code and name.
    public init(_ name: ErrorCode, _ message: String, data: [String: JSONValue] = [:]) {
        self.init(code: name.jsonRPCCode, name: name, message: message, data: data)
    }

    public static func parseError(_ detail: String) -> RPCError {
        RPCError(code: -32700, name: .PARSE_ERROR, message: "Parse error: \(detail)")
    }

    public static func invalidRequest(_ detail: String) -> RPCError {
        RPCError(code: -32600, name: .BAD_REQUEST, message: "Invalid Request: \(detail)")
    }

    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(
            code: -32601, name: .NOT_FOUND,
            message: "Method not found: '\(method)'; rpc.discover lists the methods",
            data: ["method": .string(method)])
    }

    /// Params that are missing, mistyped, unknown or out of range; `field` names the offender.
    public static func invalidParams(field: String?, _ problem: String) -> RPCError {
        var data: [String: JSONValue] = ["reason": .string(problem)]
        if let field { data["field"] = .string(field) }
        return RPCError(code: -32602, name: .BAD_REQUEST, message: "Invalid params: \(problem)", data: data)
    }

    /// A failure of ours; the message leaks nothing.
    public static let internalError = RPCError(
        code: -32603, name: .INTERNAL_SERVER_ERROR,
        message: "Internal error; the request was not completed. Retry later or report the request id.")
}

extension RPCError: Encodable {
    enum CodingKeys: String, CodingKey { case code, message, data }
}
