import Foundation
import StripeAPI
import Testing

@Suite struct FormParametersTests {
    @Test func nestedParamsUseBracketNotation() {
        let parameters: FormParameters = [
            "mode": "payment",
            "line_items": [["price_data": ["currency": "usd", "unit_amount": 1, "product_data": ["name": "Credits"]], "quantity": 500]],
            "metadata": ["tenant_id": "t-1", "purpose": "credit_topup"],
            "expand": ["payment_intent", "customer"],
            "allow_promotion_codes": true,
        ]
        #expect(parameters.pairs.map { "\($0.0)=\($0.1)" } == [
            "mode=payment",
            "line_items[0][price_data][currency]=usd",
            "line_items[0][price_data][unit_amount]=1",
            "line_items[0][price_data][product_data][name]=Credits",
            "line_items[0][quantity]=500",
            "metadata[tenant_id]=t-1",
            "metadata[purpose]=credit_topup",
            "expand[0]=payment_intent",
            "expand[1]=customer",
            "allow_promotion_codes=true",
        ])
    }

    @Test func encodingEscapesEverythingButUnreservedCharacters() {
        let parameters: FormParameters = ["success_url": "https://x.test/billing?checkout={CHECKOUT_SESSION_ID}", "metadata": ["a b": "é&="]]
        #expect(parameters.encoded
            == "success_url=https%3A%2F%2Fx.test%2Fbilling%3Fcheckout%3D%7BCHECKOUT_SESSION_ID%7D&metadata%5Ba%20b%5D=%C3%A9%26%3D")
        let decoded = FormParameters.decodePairs(parameters.encoded)
        #expect(decoded.map(\.0) == ["success_url", "metadata[a b]"])
        #expect(decoded.map(\.1) == ["https://x.test/billing?checkout={CHECKOUT_SESSION_ID}", "é&="])
    }

    @Test func settingANameReplacesIt() {
        var parameters: FormParameters = ["limit": 10]
        parameters["limit"] = 20
        parameters["created"] = ["gt": 1_700_000_000]
        #expect(parameters.encoded == "limit=20&created%5Bgt%5D=1700000000")
    }
}

@Suite struct RetryPolicyTests {
    @Test func backoffGrowsExponentiallyUpToTheCap() {
        let policy = RetryPolicy(maxAttempts: 6, initialDelay: .milliseconds(100), maxDelay: .seconds(1))
        #expect(policy.delay(after: 1, jitter: 1) == .milliseconds(100))
        #expect(policy.delay(after: 2, jitter: 1) == .milliseconds(200))
        #expect(policy.delay(after: 3, jitter: 1) == .milliseconds(400))
        #expect(policy.delay(after: 5, jitter: 1) == .seconds(1))
        #expect(policy.delay(after: 3, jitter: 0.5) == .milliseconds(200))
        #expect(policy.delay(after: 3, jitter: 0) == .zero)
    }

    @Test func stripeShouldRetryDecidesWhenPresent() {
        #expect(RetryPolicy.shouldRetry(status: 500, shouldRetryHeader: nil))
        #expect(RetryPolicy.shouldRetry(status: 429, shouldRetryHeader: nil))
        #expect(RetryPolicy.shouldRetry(status: 409, shouldRetryHeader: nil))
        #expect(!RetryPolicy.shouldRetry(status: 402, shouldRetryHeader: nil))
        #expect(!RetryPolicy.shouldRetry(status: 400, shouldRetryHeader: nil))
        #expect(!RetryPolicy.shouldRetry(status: 500, shouldRetryHeader: "false"))
        #expect(RetryPolicy.shouldRetry(status: 400, shouldRetryHeader: "true"))
    }
}

@Suite struct WebhookSignatureTests {
    let body = Array(#"{"id":"evt_1","object":"event"}"#.utf8)
    let now = Date(timeIntervalSince1970: 1_700_000_000)
    /// Computed by Stripe's Python library: stripe.WebhookSignature._compute_signature.
    let stripeSignature = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd"

    @Test func acceptsStripesOwnSignature() throws {
        try WebhookSignature.verify(
            header: "t=1700000000,v1=\(stripeSignature)", body: body, secrets: ["whsec_test_secret"], now: now, tolerance: .seconds(300))
        #expect(WebhookSignature.header(body: body, secrets: ["whsec_test_secret"], timestamp: 1_700_000_000)
            == "t=1700000000,v1=\(stripeSignature)")
    }

    @Test func anyV1MayMatchAnySecret() throws {
        let header = "t=1700000000,v1=\(String(repeating: "0", count: 64)),v0=abc,v1=\(stripeSignature)"
        try WebhookSignature.verify(header: header, body: body, secrets: ["whsec_old", "whsec_test_secret"], now: now, tolerance: .seconds(300))
    }

    /// As Stripe's libraries check it: only an old timestamp is refused, so a server whose clock is behind Stripe's
    /// (here by an hour, or by any amount) still takes every webhook.
    @Test func aTimestampFromTheFutureIsAccepted() throws {
        let good = "t=1700000000,v1=\(stripeSignature)"
        for behind: TimeInterval in [-400, -3600, -86400 * 365] {
            try WebhookSignature.verify(header: good, body: body, secrets: ["whsec_test_secret"],
                                        now: now.addingTimeInterval(behind), tolerance: .seconds(300))
        }
        #expect(throws: WebhookSignature.Failure.noSignatureMatches) {
            try WebhookSignature.verify(header: "t=\(Int.max),v1=\(stripeSignature)", body: body, secrets: ["whsec_test_secret"],
                                        now: now, tolerance: .seconds(300))
        }
    }

    @Test func refusesTamperingWrongSecretsStalenessAndGarbage() {
        let good = "t=1700000000,v1=\(stripeSignature)"
        #expect(throws: WebhookSignature.Failure.noSignatureMatches) {
            try WebhookSignature.verify(header: good, body: body + [32], secrets: ["whsec_test_secret"], now: now, tolerance: .seconds(300))
        }
        #expect(throws: WebhookSignature.Failure.noSignatureMatches) {
            try WebhookSignature.verify(header: good, body: body, secrets: ["whsec_other"], now: now, tolerance: .seconds(300))
        }
        #expect(throws: WebhookSignature.Failure.stale(ageSeconds: 301)) {
            try WebhookSignature.verify(header: good, body: body, secrets: ["whsec_test_secret"],
                                        now: now.addingTimeInterval(301), tolerance: .seconds(300))
        }
        for extreme in [Int.min, -1] {
            #expect(throws: WebhookSignature.Failure.self) {
                try WebhookSignature.verify(header: "t=\(extreme),v1=\(stripeSignature)", body: body, secrets: ["whsec_test_secret"],
                                            now: now, tolerance: .seconds(300))
            }
        }
        #expect(throws: WebhookSignature.Failure.missingHeader) {
            try WebhookSignature.verify(header: nil, body: body, secrets: ["whsec_test_secret"], now: now, tolerance: .seconds(300))
        }
        for header in ["garbage", "t=abc,v1=\(stripeSignature)", "t=1700000000", "t=1700000000,v1=zz"] {
            #expect(throws: WebhookSignature.Failure.malformedHeader) {
                try WebhookSignature.verify(header: header, body: body, secrets: ["whsec_test_secret"], now: now, tolerance: .seconds(300))
            }
        }
    }
}
