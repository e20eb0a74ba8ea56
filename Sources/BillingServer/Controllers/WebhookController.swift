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

/// `POST /webhooks/stripe`: Stripe's events, acknowledged once they are stored.
struct WebhookController {
    let receiver: WebhookReceiver
    let metrics: ServerMetrics

    func addRoutes(to router: Router<some RequestContext>) {
        let (receiver, metrics) = (receiver, metrics)
        router.post("/webhooks/stripe") { request, context in
            try await handleWebhook(request, context: context, receiver: receiver, metrics: metrics)
        }
    }
}

/// Stripe events are well under this.
let maxWebhookBodyBytes = 1 << 20

/// `POST /webhooks/stripe`: 2xx only once the event is durable; 400 for what is not from Stripe; 503 to be retried.
func handleWebhook(
    _ request: Request, context: some RequestContext, receiver: WebhookReceiver, metrics: ServerMetrics
) async throws -> Response {
    func answer(_ status: HTTPResponse.Status, _ fields: [String: Any]) -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
    let body: ByteBuffer
    do {
        body = try await request.body.collect(upTo: maxWebhookBodyBytes)
    } catch {
        metrics.recordWebhook(outcome: "too_large")
        return answer(.contentTooLarge, ["error": "the body is larger than 1 MiB; Stripe events are smaller"])
    }
    let outcome = await receiver.receive(
        body: Array(body.readableBytesView), signature: request.headers[.init("Stripe-Signature")!], logger: context.logger)
    switch outcome {
    case .accepted(let id, let duplicate, let ignored):
        metrics.recordWebhook(outcome: ignored ? "ignored" : duplicate ? "duplicate" : "stored")
        return answer(.ok, ["received": true, "id": id, "duplicate": duplicate, "ignored": ignored])
    case .rejected(let reason):
        metrics.recordWebhook(outcome: "rejected")
        return answer(.badRequest, ["error": reason])
    case .unavailable(let reason):
        metrics.recordWebhook(outcome: "unavailable")
        return answer(.serviceUnavailable, ["error": reason])
    }
}
