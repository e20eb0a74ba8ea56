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

/// Logs each request's method and path at debug level, never its query: an invoice link's query is its signature, a
/// credential for as long as the link lives (Hummingbird's own request logging writes the whole URI).
struct LogRequestPathsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        context.logger.debug("Request", metadata: [
            "hb.request.path": .string(request.uri.path), "hb.request.method": .string(request.method.rawValue),
        ])
        return try await next(request, context)
    }
}

/// Echoes the request id that every log line of the request carries, so a client can quote it.
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.init("X-Request-Id")!] = context.id
        return response
    }
}
