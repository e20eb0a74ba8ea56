import Foundation
import JSONRPC
import Testing

struct NoContext: Sendable {}

struct Subtract: Decodable, Sendable {
    var minuend: Int
    var subtrahend: Int
}

struct Numbers: Decodable, Sendable {
    var a: Int?
    var b: Int?
    var c: Int?
}

struct Anything: Decodable, Sendable {
    var a: JSONValue?
    var b: JSONValue?
    var c: JSONValue?
    var d: JSONValue?
    var e: JSONValue?
}

struct Boom: Error {}

/// The methods the JSON-RPC 2.0 specification's examples call.
func specificationServer() -> JSONRPCServer<NoContext> {
    var registry = MethodRegistry<NoContext>()
    registry.register("subtract", kind: .query, positionalParams: ["minuend", "subtrahend"]) { (p: Subtract, _) in
        p.minuend - p.subtrahend
    }
    registry.register("sum", kind: .query, positionalParams: ["a", "b", "c"]) { (p: Numbers, _) in
        (p.a ?? 0) + (p.b ?? 0) + (p.c ?? 0)
    }
    registry.register("update", kind: .mutation, positionalParams: ["a", "b", "c", "d", "e"]) { (_: Anything, _) in true }
    registry.register("notify_hello", kind: .mutation, positionalParams: ["a"]) { (_: Anything, _) in true }
    registry.register("get_data", kind: .query) { (_: NoParams, _) in [JSONValue.string("hello"), .integer(5)] }
    registry.register("explode", kind: .mutation) { (_: NoParams, _) -> Int in throw Boom() }
    registry.register("teapot", kind: .mutation) { (_: NoParams, _) -> Int in
        throw RPCError(.PRECONDITION_FAILED, "not today", data: ["hint": "tomorrow"])
    }
    return JSONRPCServer(registry: registry)
}

func call(_ body: String) async throws -> JSONValue? {
    switch await specificationServer().respond(to: Array(body.utf8), context: NoContext()) {
    case .none: return nil
    case .body(let bytes): return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }
}

/// `{"jsonrpc":"2.0","result":...,"id":...}`
func success(_ result: JSONValue, id: JSONValue) -> JSONValue {
    ["jsonrpc": "2.0", "result": result, "id": id]
}

func errorCode(_ response: JSONValue?) -> Int? {
    if case .integer(let code)? = response?["error"]?["code"] { code } else { nil }
}

/// The examples of section 7 of the JSON-RPC 2.0 specification, answered exactly (error messages are ours).
@Suite struct SpecificationExamplesTests {
    @Test func positionalParameters() async throws {
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#) == success(19, id: 1))
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}"#) == success(-19, id: 2))
    }

    @Test func namedParameters() async throws {
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#)
            == success(19, id: 3))
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}"#)
            == success(19, id: 4))
    }

    @Test func notificationsGetNoResponse() async throws {
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#) == nil)
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "foobar"}"#) == nil)
    }

    @Test func nonExistentMethod() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#)
        #expect(errorCode(response) == -32601)
        #expect(response?["id"] == "1")
        #expect(response?["jsonrpc"] == "2.0")
        #expect(response?["result"] == nil)
    }

    @Test func invalidJSON() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#)
        #expect(errorCode(response) == -32700)
        #expect(response?["id"] == .null)
    }

    @Test func invalidRequestObject() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#)
        #expect(errorCode(response) == -32600)
        #expect(response?["id"] == .null)
    }

    @Test func batchWithInvalidJSON() async throws {
        let response = try await call("""
            [
              {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
              {"jsonrpc": "2.0", "method"
            ]
            """)
        #expect(errorCode(response) == -32700)
        #expect(response?["id"] == .null)
    }

    @Test func emptyArrayIsOneInvalidRequest() async throws {
        let response = try await call("[]")
        guard case .object = response else { Issue.record("expected a single error object, got \(String(describing: response))"); return }
        #expect(errorCode(response) == -32600)
        #expect(response?["id"] == .null)
    }

    @Test func invalidBatchOfOne() async throws {
        guard case .array(let responses)? = try await call("[1]") else { Issue.record("expected an array"); return }
        #expect(responses.count == 1)
        #expect(errorCode(responses[0]) == -32600)
        #expect(responses[0]["id"] == .null)
    }

    @Test func invalidBatchOfThree() async throws {
        guard case .array(let responses)? = try await call("[1,2,3]") else { Issue.record("expected an array"); return }
        #expect(responses.count == 3)
        #expect(responses.allSatisfy { errorCode($0) == -32600 && $0["id"] == .null })
    }

    @Test func mixedBatch() async throws {
        let response = try await call("""
            [
                {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
                {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
                {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
                {"foo": "boo"},
                {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
                {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
            ]
            """)
        guard case .array(let responses)? = response else { Issue.record("expected an array"); return }
        #expect(responses.count == 5)
        #expect(responses.contains(success(7, id: "1")))
        #expect(responses.contains(success(19, id: "2")))
        #expect(responses.contains(success(["hello", 5], id: "9")))
        #expect(responses.contains { errorCode($0) == -32600 && $0["id"] == .null })
        #expect(responses.contains { errorCode($0) == -32601 && $0["id"] == "5" })
    }

    @Test func batchOfNotificationsOnly() async throws {
        #expect(try await call("""
            [
                {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
                {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
            ]
            """) == nil)
    }
}

@Suite struct RequestValidationTests {
    @Test(arguments: [
        #"{"jsonrpc": "1.0", "method": "get_data", "id": 1}"#,
        #"{"method": "get_data", "id": 1}"#,
        #"{"jsonrpc": "2.0", "id": 1}"#,
        #"{"jsonrpc": "2.0", "method": "get_data", "id": {"a": 1}}"#,
        #"{"jsonrpc": "2.0", "method": "get_data", "id": [1]}"#,
        #"{"jsonrpc": "2.0", "method": "get_data", "id": true}"#,
        #"{"jsonrpc": "2.0", "method": "get_data", "params": "x", "id": 1}"#,
        #"{"jsonrpc": "2.0", "method": "get_data", "params": 3, "id": 1}"#,
        #""just a string""#,
    ])
    func invalidRequests(body: String) async throws {
        let response = try await call(body)
        #expect(errorCode(response) == -32600)
        #expect(response?["id"] == .null)
        #expect(response?["error"]?["data"]?["code"] == "BAD_REQUEST")
    }

    @Test(arguments: [
        (#""abc""#, JSONValue.string("abc")), ("7", .integer(7)), ("-3", .integer(-3)), ("1.5", .double(1.5)),
        ("null", .null), (#""""#, .string("")),
    ])
    func idIsEchoedExactly(idText: String, id: JSONValue) async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "get_data", "id": \#(idText)}"#)
        #expect(response == success(["hello", 5], id: id))
    }

    @Test func missingParamIsNamed() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 1}, "id": 1}"#)
        #expect(errorCode(response) == -32602)
        #expect(response?["error"]?["data"]?["field"] == "subtrahend")
        #expect(response?["error"]?["data"]?["code"] == "BAD_REQUEST")
        #expect(response?["id"] == 1)
    }

    @Test func wronglyTypedParamIsNamedWithItsType() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": "1", "subtrahend": 2}, "id": 1}"#)
        #expect(errorCode(response) == -32602)
        #expect(response?["error"]?["data"]?["field"] == "minuend")
        #expect(response?["error"]?["data"]?["reason"]?.stringValue?.contains("an integer") == true)
    }

    @Test func unknownParamIsRefused() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 1, "subtrahend": 2, "priceId": "x"}, "id": 1}"#)
        #expect(errorCode(response) == -32602)
        #expect(response?["error"]?["data"]?["field"] == "priceId")
    }

    @Test func tooManyPositionalParams() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "subtract", "params": [1, 2, 3], "id": 1}"#)
        #expect(errorCode(response) == -32602)
    }

    @Test func positionalParamsToANamedOnlyMethod() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "get_data", "params": [1], "id": 1}"#)
        #expect(errorCode(response) == -32602)
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "get_data", "params": [], "id": 1}"#) == success(["hello", 5], id: 1))
    }

    @Test func internalFailuresLeakNothing() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "explode", "id": 1}"#)
        #expect(errorCode(response) == -32603)
        #expect(response?["error"]?["data"]?["code"] == "INTERNAL_SERVER_ERROR")
        let message = response?["error"]?["message"]?.stringValue ?? ""
        #expect(!message.contains("Boom"))
    }

    @Test func applicationErrorsCarryTheTRPCName() async throws {
        let response = try await call(#"{"jsonrpc": "2.0", "method": "teapot", "id": 1}"#)
        #expect(errorCode(response) == -32012)
        #expect(response?["error"]?["data"]?["code"] == "PRECONDITION_FAILED")
        #expect(response?["error"]?["data"]?["hint"] == "tomorrow")
    }

    @Test func failingNotificationIsStillNotAnswered() async throws {
        #expect(try await call(#"{"jsonrpc": "2.0", "method": "explode"}"#) == nil)
    }

    @Test func oversizedBatchIsRefused() async throws {
        let entries = Array(repeating: #"{"jsonrpc":"2.0","method":"get_data","id":1}"#, count: 101).joined(separator: ",")
        let response = try await call("[\(entries)]")
        #expect(errorCode(response) == -32600)
    }

    @Test func errorCodesFollowTRPCsTable() {
        let expected: [ErrorCode: (Int, Int)] = [
            .UNAUTHORIZED: (-32001, 401), .PAYMENT_REQUIRED: (-32002, 402), .FORBIDDEN: (-32003, 403),
            .NOT_FOUND: (-32004, 404), .CONFLICT: (-32009, 409), .PRECONDITION_FAILED: (-32012, 412),
            .PAYLOAD_TOO_LARGE: (-32013, 413), .TOO_MANY_REQUESTS: (-32029, 429), .BAD_REQUEST: (-32600, 400),
            .INTERNAL_SERVER_ERROR: (-32603, 500), .SERVICE_UNAVAILABLE: (-32603, 503), .PARSE_ERROR: (-32700, 400),
        ]
        for (code, (rpc, http)) in expected {
            #expect(code.jsonRPCCode == rpc, "\(code)")
            #expect(code.httpStatus == http, "\(code)")
        }
    }
}
