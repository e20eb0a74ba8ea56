import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import StripeAPI

/// A price the stand-in knows (the plan catalog's, for `billingd stand-in`).
public struct StandInPrice: Sendable, Equatable {
    public var id: String
    public var unitAmount: Int
    public var currency: String
    /// nil for a one-time price.
    public var interval: String?
    public var productName: String

    public init(id: String, unitAmount: Int, currency: String, interval: String?, productName: String) {
        self.id = id
        self.unitAmount = unitAmount
        self.currency = currency
        self.interval = interval
        self.productName = productName
    }
}

public struct StandInConfiguration: Sendable {
    /// Where the hosted Checkout and portal pages are served (this server's own base URL).
    public var publicURL: String
    public var webhookURL: String?
    public var webhookSecret: String
    public var prices: [StandInPrice]
    /// Webhook deliveries that fail are retried with exponential backoff from this delay...
    public var webhookRetryInitial: Duration
    /// ... up to this many attempts in all.
    public var webhookMaxAttempts: Int
    /// The account's retry schedule for a subscription's failed payment (Stripe's "custom retry schedule"): the days
    /// after each failed attempt that the next one is made. After the last, `afterFinalFailure`.
    public var retryDays: [Int]
    public var afterFinalFailure: FinalFailure
    /// The wall clock (test clocks run on their own time); given by whoever runs the stand-in.
    public var clock: @Sendable () -> Date

    /// What the account's settings do to a subscription once every retry of its payment has failed.
    public enum FinalFailure: String, Sendable, CaseIterable {
        case cancel
        case markUnpaid = "unpaid"
        case leavePastDue = "past_due"
    }

    public init(publicURL: String, webhookURL: String?, webhookSecret: String, prices: [StandInPrice],
                webhookRetryInitial: Duration = .seconds(1), webhookMaxAttempts: Int = 8,
                retryDays: [Int] = [3, 5, 7], afterFinalFailure: FinalFailure = .cancel, clock: @escaping @Sendable () -> Date) {
        self.clock = clock
        self.publicURL = publicURL
        self.webhookURL = webhookURL
        self.webhookSecret = webhookSecret
        self.prices = prices
        self.webhookRetryInitial = webhookRetryInitial
        self.webhookMaxAttempts = webhookMaxAttempts
        self.retryDays = retryDays
        self.afterFinalFailure = afterFinalFailure
    }
}

/// A transport-free request and response, so the state machine can be driven by HTTP or by tests.
public struct StandInRequest: Sendable {
    public var method: String
    public var path: String
    public var query: String
    public var body: String
    public var authorization: String?
    public var idempotencyKey: String?
    /// The `Stripe-Version` header, when sent.
    public var stripeVersion: String? = nil
}

public struct StandInResponse: Sendable {
    public var status: Int
    public var body: Data
    public var headers: [(String, String)] = []
    /// An answer given after execution that Stripe keeps under the idempotency key whatever its status.
    var storeUnderKey = false
}

/// An injected fault, taken by the next matching API request.
public struct StandInFault: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// 429 before the request is executed: not stored under the idempotency key, as at Stripe.
        case rateLimited = "429"
        /// 500 before execution: not stored either.
        case errorBeforeExecution = "500"
        /// Executes, then answers 500, and stores that 500 under the idempotency key (replayed on retry).
        case errorAfterExecution = "500-after"
        /// Waits `delayMilliseconds` before handling.
        case delay
        /// 402 card_declined.
        case cardDeclined = "card_declined"
        /// 400 invalid param.
        case invalidParam = "invalid_param"
    }

    public var kind: Kind
    /// Applies to requests whose path starts with this (all when nil).
    public var path: String?
    public var count: Int?
    public var delayMilliseconds: Int?

    public init(kind: Kind, path: String? = nil, count: Int? = nil, delayMilliseconds: Int? = nil) {
        self.kind = kind
        self.path = path
        self.count = count
        self.delayMilliseconds = delayMilliseconds
    }
}
