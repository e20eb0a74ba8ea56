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

/// `GET` and `POST /trpc/{paths}`: the same methods over tRPC's HTTP shape, queries by GET and mutations by POST.
struct TRPCController {
    let transport: TRPCTransport<Caller>
    let tokens: TokenAuthority

    func addRoutes(to router: Router<some RequestContext>) {
        let (transport, tokens) = (transport, tokens)
        router.get("/trpc/{paths}") { request, context in
            try await handleTRPC(request, context: context, verb: .get, transport: transport, tokens: tokens)
        }
        router.post("/trpc/{paths}") { request, context in
            try await handleTRPC(request, context: context, verb: .post, transport: transport, tokens: tokens)
        }
    }
}

/// `/trpc/*`: tRPC's HTTP transport over the same registry as `/rpc`, with the same bearer tokens.
func handleTRPC(
    _ request: Request, context: some RequestContext, verb: TRPCTransport<Caller>.Verb, transport: TRPCTransport<Caller>,
    tokens: TokenAuthority
) async throws -> Response {
    let paths = context.parameters.get("paths") ?? ""
    let batch = ["1", "true"].contains(request.uri.queryParameters.get("batch") ?? "")
    // As /rpc: the token first, and a smaller body without a valid one.
    let authentication = await tokens.authenticate(header: request.headers[.authorization])
    var input: [UInt8]?
    switch verb {
    case .get:
        input = request.uri.queryParameters.get("input").map { Array($0.utf8) }
    case .post:
        let (limit, tooLarge) = bodyLimit(authentication)
        guard let body = try? await request.body.collect(upTo: limit) else {
            return trpcResponse(transport.answer([.failure(tooLarge)], names: [paths], batch: false))
        }
        input = Array(body.readableBytesView)
    }
    let caller = Caller(authentication: authentication, requestID: context.id, logger: context.logger)
    return trpcResponse(await transport.respond(verb: verb, paths: paths, batch: batch, input: input, context: caller))
}

func trpcResponse(_ answer: TRPCTransport<Caller>.Answer) -> Response {
    Response(
        status: .init(code: answer.status), headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
}
