import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// How the client talks to Stripe. Every delay can be set down to milliseconds so tests never sleep for real.
public struct StripeConfiguration: Sendable {
    public static let apiVersion = "2026-10-28.endive"

    public var apiBase: String
    public var secretKey: String
    /// Per attempt.
    public var timeout: Duration
    public var retry: RetryPolicy

    public init(apiBase: String = "https://api.stripe.com", secretKey: String, timeout: Duration = .seconds(30),
                retry: RetryPolicy = RetryPolicy()) {
        self.apiBase = apiBase.hasSuffix("/") ? String(apiBase.dropLast()) : apiBase
        self.secretKey = secretKey
        self.timeout = timeout
        self.retry = retry
    }

    /// `sk_live_` keys are live mode; anything else is test mode.
    public var isLiveMode: Bool { secretKey.hasPrefix("sk_live_") }
}

/// Exponential backoff with full jitter, capped.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts in all, the first included.
    public var maxAttempts: Int
    public var initialDelay: Duration
    public var maxDelay: Duration

    public init(maxAttempts: Int = 3, initialDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(8)) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1); `jitter` in 0...1 picks a point in the window.
    public func delay(after attempt: Int, jitter: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let window = min(initialDelay * (1 << exponent), maxDelay)
        return window * min(max(jitter, 0), 1)
    }

    /// Whether a response is worth another attempt: Stripe's `Stripe-Should-Retry` decides when present; otherwise
    /// 409 (a concurrent request with the same key is in flight), 429 and 5xx are retried.
    public static func shouldRetry(status: Int, shouldRetryHeader: String?) -> Bool {
        switch shouldRetryHeader?.lowercased() {
        case "true": return true
        case "false": return false
        default: return status == 409 || status == 429 || status >= 500
        }
    }
}

/// A Stripe API client: form-encoded requests, pinned API version, an Idempotency-Key on every POST,
/// timeouts, retries, and Stripe's error envelope decoded into `StripeError`.
public struct StripeClient: Sendable {
    public let configuration: StripeConfiguration
    let http: HTTPClient
    let logger: Logger
    let sleep: @Sendable (Duration) async throws -> Void
    let jitter: @Sendable () -> Double

    public init(
        configuration: StripeConfiguration, http: HTTPClient = .shared, logger: Logger = Logger(label: "stripe"),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }
    ) {
        self.configuration = configuration
        self.http = http
        self.logger = logger
        self.sleep = sleep
        self.jitter = jitter
    }

    public enum Method: String, Sendable { case get = "GET", post = "POST", delete = "DELETE" }

    /// Sends one API call and decodes the object Stripe answers with.
    /// POSTs carry `idempotencyKey` (derived by the caller from its own operation, so a retry after a timeout never
    /// creates twice); every retry of a call reuses it. A POST without one is never retried.
    public func send<Object: Decodable & Sendable>(
        _ method: Method, _ path: String, _ parameters: FormParameters = [:], idempotencyKey: String? = nil,
        as type: Object.Type = Object.self
    ) async throws(StripeError) -> Object {
        let body = try await sendRaw(method, path, parameters, idempotencyKey: idempotencyKey)
        do {
            return try JSONDecoder().decode(Object.self, from: body)
        } catch {
            throw .unreadable("\(method.rawValue) \(path): \(error)")
        }
    }

    /// The raw JSON body of a successful response.
    public func sendRaw(
        _ method: Method, _ path: String, _ parameters: FormParameters = [:], idempotencyKey: String? = nil
    ) async throws(StripeError) -> Data {
        var request: HTTPClientRequest
        let query = method == .post ? "" : (parameters.isEmpty ? "" : "?" + parameters.encoded)
        request = HTTPClientRequest(url: configuration.apiBase + path + query)
        request.method = HTTPMethod(rawValue: method.rawValue)
        request.headers.add(name: "Authorization", value: "Bearer \(configuration.secretKey)")
        request.headers.add(name: "Stripe-Version", value: StripeConfiguration.apiVersion)
        request.headers.add(name: "User-Agent", value: "billingd/0.1")
        if method == .post {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            if let idempotencyKey { request.headers.add(name: "Idempotency-Key", value: idempotencyKey) }
            request.body = .bytes(ByteBuffer(string: parameters.encoded))
        }

        var attempt = 1
        while true {
            let outcome = await once(request, method: method, path: path)
            switch outcome {
            case .success(let data):
                return data
            case .failure(let failure):
                // A POST without a key is sent once: Stripe could not tell a retry of it from a second request.
                guard failure.retryable, method != .post || idempotencyKey != nil, attempt < configuration.retry.maxAttempts else {
                    throw failure.error
                }
                let delay = configuration.retry.delay(after: attempt, jitter: jitter())
                logger.notice("retrying Stripe call", metadata: [
                    "stripe.path": "\(path)", "stripe.attempt": "\(attempt)", "stripe.error": "\(failure.error)",
                ])
                do { try await sleep(delay) } catch { throw failure.error }
                attempt += 1
            }
        }
    }

    struct Failure: Error {
        var error: StripeError
        var retryable: Bool
    }

    func once(_ request: HTTPClientRequest, method: Method, path: String) async -> Result<Data, Failure> {
        let response: HTTPClientResponse
        do {
            let timeout = TimeAmount.nanoseconds(Int64(configuration.timeout / .nanoseconds(1)))
            response = try await http.execute(request, timeout: timeout)
        } catch {
            return .failure(Self.classify(transport: error, method: method, path: path))
        }
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: 16 << 20)
        } catch {
            return .failure(Failure(error: method == .post ? .indeterminate("\(path): the response was cut off") : .unavailable("\(path): the response was cut off"), retryable: true))
        }
        let data = Data(body.readableBytesView)
        let status = Int(response.status.code)
        if (200..<300).contains(status) { return .success(data) }

        var apiError = (try? JSONDecoder().decode(StripeAPIError.Envelope.self, from: data).error)
            ?? StripeAPIError(type: status >= 500 ? "api_error" : "invalid_request_error",
                              message: "HTTP \(status) with a body that is not Stripe's error envelope")
        apiError.httpStatus = status
        apiError.requestID = response.headers.first(name: "Request-Id")
        let retryable = RetryPolicy.shouldRetry(status: status, shouldRetryHeader: response.headers.first(name: "Stripe-Should-Retry"))
        let replayed = response.headers.first(name: "Idempotent-Replayed") == "true"
        if status >= 500 {
            // A 5xx may come after Stripe executed the request; a POST's outcome is then unknown until the key is
            // replayed or reconciliation reads the object. A replayed 5xx will not change on retry.
            let error: StripeError = method == .post
                ? .indeterminate("\(path): HTTP \(status) \(apiError.message ?? "")")
                : .unavailable("\(path): HTTP \(status)")
            return .failure(Failure(error: error, retryable: retryable && !replayed))
        }
        if status == 429 {
            return .failure(Failure(error: .unavailable("\(path): HTTP \(status) \(apiError.message ?? "")"), retryable: retryable))
        }
        // 409: another request with this key is still in flight (a double click whose first call Stripe is still
        // executing). Retried; once out of attempts the caller is told so, not that Stripe is down.

        return .failure(Failure(error: .refused(apiError), retryable: retryable && !replayed))
    }

    /// Errors before a response: a connection that never opened is safe to retry and means nothing happened;
    /// a timeout or a dropped connection after sending leaves a POST's outcome unknown.
    static func classify(transport error: any Error, method: Method, path: String) -> Failure {
        let neverSent: Bool = switch error {
        case is NIOConnectionError: true
        case let error as IOError: error.errnoCode == ECONNREFUSED
        case let error as HTTPClientError: error == .connectTimeout
        default: false
        }
        if neverSent || method != .post {
            return Failure(error: .unavailable("\(path): \(neverSent ? "cannot connect" : "no response")"), retryable: true)
        }
        return Failure(error: .indeterminate("\(path): no response after sending (\(type(of: error)))"), retryable: true)
    }
}
