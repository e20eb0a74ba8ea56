import Foundation

/// Stripe's error envelope: `{"error": {"type", "code", "decline_code", "param", "message"}}`.
public struct StripeAPIError: Sendable, Equatable, Decodable {
    public var type: String
    public var code: String?
    public var declineCode: String?
    public var param: String?
    public var message: String?
    /// From the `Request-Id` header.
    public var requestID: String?
    public var httpStatus: Int = 0

    enum CodingKeys: String, CodingKey {
        case type, code, param, message
        case declineCode = "decline_code"
    }

    public init(type: String, code: String? = nil, declineCode: String? = nil, param: String? = nil, message: String? = nil,
                requestID: String? = nil, httpStatus: Int = 0) {
        self.type = type
        self.code = code
        self.declineCode = declineCode
        self.param = param
        self.message = message
        self.requestID = requestID
        self.httpStatus = httpStatus
    }

    struct Envelope: Decodable { var error: StripeAPIError }

    /// A refusal of the request's own shape (a parameter unknown, missing or invalid at the pinned version): the
    /// client's mistake, never the customer's, so never a declined payment.
    public var isMalformedRequest: Bool {
        guard type == "invalid_request_error", httpStatus == 400 else { return false }
        if let code { return code.hasPrefix("parameter_") || code == "parameters_exclusive" }
        return param != nil
    }
}

/// What can go wrong talking to Stripe. The secret key never appears in any of these.
public enum StripeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stripe refused the request (a 4xx with its error envelope): not worth retrying as it is.
    case refused(StripeAPIError)
    /// Stripe could not be reached, or kept failing before executing the request; nothing was done.
    case unavailable(String)
    /// Stripe may or may not have executed the request (a 5xx after execution, a timeout after sending).
    /// A retry with the same idempotency key, or reconciliation, settles it.
    case indeterminate(String)
    /// The response could not be read as the expected object.
    case unreadable(String)

    public var description: String {
        switch self {
        case .refused(let error):
            "Stripe refused the request (\(error.httpStatus) \(error.type)\(error.code.map { "/\($0)" } ?? "")"
                + "\(error.declineCode.map { "/\($0)" } ?? ""))\(error.param.map { " param \($0)" } ?? ""): "
                + "\(error.message ?? "no message")\(error.requestID.map { " [\($0)]" } ?? "")"
        case .unavailable(let reason): "Stripe is unavailable: \(reason)"
        case .indeterminate(let reason): "the outcome at Stripe is unknown: \(reason)"
        case .unreadable(let reason): "Stripe's response could not be read: \(reason)"
        }
    }
}
