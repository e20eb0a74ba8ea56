import BillingStore
import BillingDevSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import JSONRPC
import Logging
import NIOCore
import StripeAPI
import Testing

/// Events built from Stripe's own example objects (Tests/BillingServerTests/Fixtures, MIT, Stripe, Inc.).
enum StripeFixtures {
    /// Read each time: the objects are small, and a parsed [String: Any] cannot be shared across tasks.
    static var resources: [String: Any] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/stripe-fixtures.json")
        return (try? JSONSerialization.jsonObject(with: Data(contentsOf: file))) as? [String: Any] ?? [:]
    }

    /// An event of `type` around a copy of the fixture object `kind`.
    static func event(id: String, type: String, object kind: String, livemode: Bool = false, created: Int = Int(Date().timeIntervalSince1970)) -> [UInt8] {
        let resources = self.resources
        var event = resources["event"] as? [String: Any] ?? [:]
        event["id"] = id
        event["type"] = type
        event["created"] = created
        event["livemode"] = livemode
        event["data"] = ["object": resources[kind] ?? [:]]
        return Array((try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data())
    }
}

@Suite struct WebhookEndpointTests {
    static let secrets = ["whsec_old_secret_for_tests", "whsec_new_secret_for_tests"]
    let extra = ["STRIPE_WEBHOOK_SECRETS": secrets.joined(separator: ","), "BILLING_INBOX_WORKERS": "0"]

    func deliver(_ client: some TestClientProtocol, _ body: [UInt8], signature: String?) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if let signature { headers[.init("Stripe-Signature")!] = signature }
        return try await client.execute(uri: "/webhooks/stripe", method: .post, headers: headers, body: ByteBuffer(bytes: body))
    }

    func sign(_ body: [UInt8], secret: String = secrets[1], at time: Int = Int(Date().timeIntervalSince1970)) -> String {
        WebhookSignature.header(body: body, secrets: [secret], timestamp: time)
    }

    func stored(_ server: TestServer) async throws -> [String: String] {
        try await server.database.withOwnerClient { connection in
            var rows: [String: String] = [:]
            for try await (id, status) in try await connection.query("SELECT event_id, status FROM billing.stripe_events", logger: Logger(label: "t"))
                .decode((String, String).self) { rows[id] = status }
            return rows
        }
    }

    @Test func aSignedEventIsStoredOnceHoweverOftenItArrives() async throws {
        try await TestServer.run(extra: extra) { client, server in
            let body = StripeFixtures.event(id: "evt_once", type: "checkout.session.completed", object: "checkout.session")
            for attempt in 1...3 {
                let response = try await deliver(client, body, signature: sign(body))
                #expect(response.status == .ok)
                let answer = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
                #expect(answer["duplicate"] == .bool(attempt > 1))
            }
            #expect(try await stored(server) == ["evt_once": "pending"])
        }
    }

    @Test func headersFromStripesOwnLibraryAreAcceptedWithEitherSecret() async throws {
        guard let python = ProcessInfo.processInfo.environment["BILLING_TEST_PYTHON"], !python.isEmpty else {
            Issue.record("BILLING_TEST_PYTHON is not set: run the tests with `make test`")
            return
        }
        try await TestServer.run(extra: extra) { client, server in
            for (index, secret) in Self.secrets.enumerated() {
                let body = StripeFixtures.event(id: "evt_lib_\(index)", type: "payment_intent.succeeded", object: "payment_intent")
                let bodyFile = FileManager.default.temporaryDirectory.appendingPathComponent("event-\(UUID()).json")
                defer { try? FileManager.default.removeItem(at: bodyFile) }
                try Data(body).write(to: bodyFile)
                let script = "import stripe,sys; print(stripe.WebhookSignature.generate_signature_header(open(sys.argv[1]).read(), sys.argv[2]))"
                let signed = try await ProgramRun.run([python, "-c", script, bodyFile.path, secret])
                #expect(signed.succeeded, "\(signed.errors)")
                let header = signed.output.trimmingCharacters(in: .whitespacesAndNewlines)
                let response = try await deliver(client, body, signature: header)
                #expect(response.status == .ok, "\(String(buffer: response.body))")
            }
            #expect(try await stored(server).count == 2)
        }
    }

    @Test func tamperingWrongSecretsStalenessAndGarbageAreRefusedAndStoredNowhere() async throws {
        try await TestServer.run(extra: extra) { client, server in
            let body = StripeFixtures.event(id: "evt_bad", type: "checkout.session.completed", object: "checkout.session")
            var tampered = body
            tampered[tampered.count / 2] ^= 0x01
            let now = Int(Date().timeIntervalSince1970)
            let cases: [([UInt8], String?, String)] = [
                (tampered, sign(body), "tampered"),
                (body, sign(body, secret: "whsec_someone_else"), "wrong secret"),
                (body, sign(body, at: now - 301), "stale"),
                (body, nil, "no header"),
                (body, "t=\(now),v1=nothex", "malformed"),
                (Array("{}".utf8), sign(Array("{}".utf8)), "no id to store it by"),
                (Array("[1]".utf8), sign(Array("[1]".utf8)), "not a JSON object"),
            ]
            for (payload, signature, label) in cases {
                let response = try await deliver(client, payload, signature: signature)
                #expect(response.status == .badRequest, "\(label)")
            }
            #expect(try await stored(server).isEmpty)
        }
    }

    /// Stripe's libraries refuse only old signatures: a server whose clock is behind Stripe's takes every webhook.
    @Test func aSignatureFromTheFutureIsAccepted() async throws {
        try await TestServer.run(extra: extra) { client, server in
            let body = StripeFixtures.event(id: "evt_future", type: "checkout.session.completed", object: "checkout.session")
            let response = try await deliver(client, body, signature: sign(body, at: Int(Date().timeIntervalSince1970) + 3600))
            #expect(response.status == .ok)
            #expect(try await stored(server)["evt_future"] != nil)
        }
    }

    /// A signed body with an id that is no usable v1 event is kept as ignored, with the reason, and answered 200: a
    /// 400 would have Stripe retry it for days and then disable the endpoint.
    @Test func signedPayloadsThatAreNoUsableEventAreKeptAsIgnored() async throws {
        try await TestServer.run(extra: extra) { client, server in
            let thin = Array(#"{"id":"evt_test_65R9Ijk8pUVAEzHwcmo","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","created":"2026-12-01T10:00:00.000Z","livemode":false,"related_object":{"id":"mtr_1","type":"billing.meter","url":"/v1/billing/meters/mtr_1"}}"#.utf8)
            let notAnEvent = Array(#"{"id":"cus_123","object":"customer","email":"a@b.example"}"#.utf8)
            for body in [thin, notAnEvent] {
                let response = try await deliver(client, body, signature: sign(body))
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let answer = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
                #expect(answer["ignored"] == true)
            }
            #expect(try await stored(server) == ["evt_test_65R9Ijk8pUVAEzHwcmo": "ignored", "cus_123": "ignored"])
            let reasons: [String] = try await server.database.withOwnerClient { connection in
                var out: [String] = []
                for try await (reason) in try await connection.query(
                    "SELECT coalesce(last_error, '') FROM billing.stripe_events ORDER BY event_id", logger: Logger(label: "t")).decode(String.self) {
                    out.append(reason)
                }
                return out
            }
            #expect(reasons.count == 2)
            #expect(reasons.contains { $0.contains("not a usable v1 event (object 'customer'") })
            #expect(reasons.contains { $0.contains("thin v2.core.event event") })
        }
    }

    @Test func eventsOfTheOtherModeAreAcknowledgedAndIgnoredVisibly() async throws {
        try await TestServer.run(extra: extra) { client, server in
            let body = StripeFixtures.event(id: "evt_live", type: "checkout.session.completed", object: "checkout.session", livemode: true)
            let response = try await deliver(client, body, signature: sign(body))
            #expect(response.status == .ok)
            let answer = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
            #expect(answer["ignored"] == true)
            #expect(try await stored(server) == ["evt_live": "ignored"])
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(try await server.token(.operator))"]).body)
            #expect(metrics.contains(#"billing_webhooks_total{outcome="ignored"} 1"#))
        }
    }

    @Test func withoutADatabaseTheAnswerIs503SoStripeRetries() async throws {
        var broken = extra
        broken["BILLING_DB_POOL_SIZE"] = "1"
        try await TestServer.run(extra: broken) { client, server in
            // The server's role loses its right to store events: the insert fails as an outage would.
            try await server.database.withOwnerClient { connection in
                try await connection.query(
                    "REVOKE EXECUTE ON FUNCTION billing.store_stripe_event(text, text, timestamptz, boolean, jsonb, text) FROM billing_rw",
                    logger: Logger(label: "t"))
            }
            let body = StripeFixtures.event(id: "evt_later", type: "invoice.paid", object: "checkout.session")
            let response = try await deliver(client, body, signature: sign(body))
            #expect(response.status == .serviceUnavailable)
            try await server.database.withOwnerClient { connection in
                try await connection.query(
                    "GRANT EXECUTE ON FUNCTION billing.store_stripe_event(text, text, timestamptz, boolean, jsonb, text) TO billing_rw",
                    logger: Logger(label: "t"))
            }
            // Stripe's retry then lands.
            #expect(try await deliver(client, body, signature: sign(body)).status == .ok)
            #expect(try await stored(server) == ["evt_later": "pending"])
        }
    }

    @Test func withoutSecretsConfiguredNothingIsAcceptedAndStripeRetries() async throws {
        try await TestServer.run { client, _ in
            let body = StripeFixtures.event(id: "evt_x", type: "invoice.paid", object: "checkout.session")
            let response = try await deliver(client, body, signature: sign(body))
            #expect(response.status == .serviceUnavailable)
        }
    }
}
