import BillingCore
import BillingStore
import JSONRPC
import StripeAPI

/// The application's errors, each carrying what the caller must change; mapped to JSON-RPC errors in `rpcError` only.
public enum BillingError: Error, CustomStringConvertible {
    case unauthenticated(String)
    case forbidden(String)
    case notFound(String)
    case conflict(String, data: [String: JSONValue] = [:])
    case preconditionFailed(String)
    case invalidParams(field: String, String)
    case paymentRequired(String, data: [String: JSONValue] = [:])
    case tooManyRequests(String, retryAfter: Duration? = nil)
    case serviceUnavailable(String)

    public var description: String { "\(rpcError)" }

    public var rpcError: RPCError {
        switch self {
        case .unauthenticated(let message): RPCError(.UNAUTHORIZED, message)
        case .forbidden(let message): RPCError(.FORBIDDEN, message)
        case .notFound(let message): RPCError(.NOT_FOUND, message)
        case .conflict(let message, let data): RPCError(.CONFLICT, message, data: data)
        case .preconditionFailed(let message): RPCError(.PRECONDITION_FAILED, message)
        case .invalidParams(let field, let message): .invalidParams(field: field, message)
        case .paymentRequired(let message, let data): RPCError(.PAYMENT_REQUIRED, message, data: data)
        case .tooManyRequests(let message, let retryAfter):
            RPCError(.TOO_MANY_REQUESTS, message, data: retryAfter.map {
                ["retryAfter": .integer(max(1, Int(($0 / .seconds(1)).rounded(.up))))]
            } ?? [:])
        case .serviceUnavailable(let message): RPCError(.SERVICE_UNAVAILABLE, message)
        }
    }

    /// Maps errors from the layers below; nil for failures of ours, which the client sees as an internal error.
    static func from(_ error: any Error) -> RPCError? {
        switch error {
        case let error as RPCError: return error
        case let error as BillingError: return error.rpcError
        case let error as SeatError: return .invalidParams(field: "seats", error.description)
        case let error as CatalogError:
            if case .unknownPlan = error { return .invalidParams(field: "plan", error.description) }
            if case .intervalNotOffered = error { return .invalidParams(field: "interval", error.description) }
            return nil
        case let error as StripeError:
            switch error {
            case .unavailable:
                return RPCError(.SERVICE_UNAVAILABLE, "Stripe is unavailable right now; nothing was changed. Try again in a moment.")
            case .indeterminate:
                return RPCError(
                    .SERVICE_UNAVAILABLE,
                    "Stripe did not answer in time; the request may have been carried out. Sending the same request again is safe: it is not carried out twice.")
            case .refused(let refusal):
                // A card error's message is written by Stripe for the customer ("Your card was declined."); any other
                // refusal is about our request, and its text (ids, parameter names) is not for clients: they get its
                // code and Stripe's request id, which an operator looks up in the Dashboard's logs.
                let message = refusal.type == "card_error"
                    ? "Stripe refused the payment: \(refusal.message ?? refusal.declineCode ?? "declined")"
                    : "Stripe refused the request (\(refusal.code ?? refusal.type)\(refusal.requestID.map { ", Stripe request \($0)" } ?? "")); nothing was changed here"
                switch refusal.httpStatus {
                case 402: return RPCError(.PAYMENT_REQUIRED, message)
                case 429: return RPCError(.TOO_MANY_REQUESTS, "Stripe is rate limiting this server; try again in a moment.")
                default: return RPCError(.PRECONDITION_FAILED, message)
                }
            case .unreadable:
                return nil
            }
        case let error as StoreError:
            switch error {
            case .conflict(let message): return RPCError(.CONFLICT, message)
            default: return nil
            }
        default: return nil
        }
    }
}
