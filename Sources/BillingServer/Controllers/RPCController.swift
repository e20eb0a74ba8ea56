import Billing
import BillingCore
import BillingStore
import Foundation
import Hummingbird
import JSONRPC
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import StripeAPI

/// `POST /rpc`: JSON-RPC 2.0, single calls and batches.
struct RPCController {
    let rpc: JSONRPCServer<Caller>
    let tokens: TokenAuthority
    let metrics: ServerMetrics

    func addRoutes(to router: Router<some RequestContext>) {
        let (rpc, tokens, metrics) = (rpc, tokens, metrics)
        router.post("/rpc") { request, context in
            try await handleRPC(request, context: context, rpc: rpc, tokens: tokens, metrics: metrics)
        }
    }
}

/// The largest JSON-RPC body accepted.
let maxRPCBodyBytes = 1 << 20

/// Without a valid token only the public methods run, whose params are small.
let maxAnonymousRPCBodyBytes = 64 << 10

/// `POST /rpc`: Content-Type and size are checked before the body is parsed.
func handleRPC(
    _ request: Request, context: some RequestContext, rpc: JSONRPCServer<Caller>, tokens: TokenAuthority, metrics: ServerMetrics
) async throws -> Response {
    let contentType = request.headers[.contentType] ?? ""
    let mediaType = contentType.split(separator: ";").first.map { $0.trimmedOfSpaces.lowercased() }
    guard mediaType == "application/json" else {
        metrics.recordRejectedBody(reason: "content_type")
        return rpcErrorResponse(.unsupportedMediaType, RPCError(
            .UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json, got '\(contentType)'"))
    }
    // The token is checked before the body is read: without a valid one only the public methods can run, and their
    // params are small, so such a request may carry far less.
    let authentication = await tokens.authenticate(header: request.headers[.authorization])
    let (limit, tooLarge) = bodyLimit(authentication)
    if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
        metrics.recordRejectedBody(reason: "too_large")
        return rpcErrorResponse(.contentTooLarge, tooLarge)
    }
    let body: ByteBuffer
    do {
        body = try await request.body.collect(upTo: limit)
    } catch {
        metrics.recordRejectedBody(reason: "too_large")
        return rpcErrorResponse(.contentTooLarge, tooLarge)
    }
    let caller = Caller(authentication: authentication, requestID: context.id, logger: context.logger)
    switch await rpc.respond(to: body.readableBytesView, context: caller) {
    case .none:
        return Response(status: .noContent)
    case .body(let bytes):
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// How much body a request may carry, and the error past it: 1 MiB with a valid token, 64 KiB without one.
func bodyLimit(_ authentication: Authentication) -> (Int, RPCError) {
    if case .authenticated = authentication {
        return (maxRPCBodyBytes, RPCError(.PAYLOAD_TOO_LARGE, "the request body is larger than 1 MiB; split the batch or send less"))
    }
    return (maxAnonymousRPCBodyBytes, RPCError(
        .PAYLOAD_TOO_LARGE, "a request without a valid token may carry at most 64 KiB (the public methods need no more)"))
}

func rpcErrorResponse(_ status: HTTPResponse.Status, _ error: RPCError) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: JSONRPCServer<Caller>.errorBody(error))))
}
