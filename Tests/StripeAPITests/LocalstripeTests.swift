import AsyncHTTPClient
import Foundation
import Logging
import StripeAPI
import Testing

/// The client against localstripe (PyPI), a Stripe server written by others: passing there shows we speak Stripe,
/// not a dialect of our own. `make test` starts it and sets BILLING_TEST_LOCALSTRIPE_URL.
enum Localstripe {
    static var url: String {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["BILLING_TEST_LOCALSTRIPE_URL"], !url.isEmpty else {
                throw LocalstripeMissing()
            }
            return url
        }
    }

    struct LocalstripeMissing: Error, CustomStringConvertible {
        var description: String {
            "BILLING_TEST_LOCALSTRIPE_URL or BILLING_TEST_PYTHON is not set: run the tests with `make test`, which starts localstripe and makes .venv"
        }
    }

    static let secretKey = "sk_test_localstripe_0123456789"

    static func client(retry: RetryPolicy = RetryPolicy(maxAttempts: 2, initialDelay: .milliseconds(1), maxDelay: .milliseconds(5))) throws -> StripeClient {
        StripeClient(configuration: StripeConfiguration(apiBase: try url, secretKey: secretKey, timeout: .seconds(10), retry: retry))
    }
}

@Suite struct LocalstripeTests {
    @Test func customersAreCreatedWithTenantMetadataAndRead() async throws {
        let client = try Localstripe.client()
        let tenant = UUID().uuidString.lowercased()
        let customer = try await client.createCustomer(
            email: "billing@acme.example", name: "Acme", tenantID: tenant, idempotencyKey: "customer:\(tenant)")
        #expect(customer.id.hasPrefix("cus_"))
        #expect(customer.metadata?["tenant_id"] == tenant)
        let read = try await client.retrieveCustomer(customer.id)
        #expect(read.email == "billing@acme.example")
        #expect(read.metadata?["tenant_id"] == tenant)
    }

    @Test func paymentIntentsChargeOffSessionAndRefund() async throws {
        let client = try Localstripe.client()
        let customer = try await client.createCustomer(email: "p@acme.example", name: "P", tenantID: "t", idempotencyKey: UUID().uuidString)
        let intent = try await client.createPaymentIntent([
            "amount": 1250, "currency": "usd", "customer": .string(customer.id), "payment_method": "pm_card_visa",
            "confirm": true, "off_session": true, "metadata": ["tenant_id": "t", "invoice_id": "inv-1"],
        ], idempotencyKey: "invoice:inv-1:attempt:1")
        #expect(intent.status == "succeeded")
        #expect(intent.amount == 1250)
        #expect(intent.latestCharge?.id.hasPrefix("ch_") == true)
        #expect(try await client.retrievePaymentIntent(intent.id).status == "succeeded")

        let partial = try await client.createRefund(["payment_intent": .string(intent.id), "amount": 250], idempotencyKey: UUID().uuidString)
        #expect(partial.amount == 250)
        #expect(partial.paymentIntent?.id == intent.id || partial.charge?.id == intent.latestCharge?.id)

        let second = try await client.createPaymentIntent([
            "amount": 700, "currency": "usd", "customer": .string(customer.id), "payment_method": "pm_card_visa",
            "confirm": true, "off_session": true,
        ], idempotencyKey: UUID().uuidString)
        let whole = try await client.createRefund(["payment_intent": .string(second.id)], idempotencyKey: UUID().uuidString)
        #expect(whole.amount == 700)
    }

    @Test func aDeclinedCardIsATypedRefusal() async throws {
        let client = try Localstripe.client()
        let customer = try await client.createCustomer(email: "d@acme.example", name: "D", tenantID: "t", idempotencyKey: UUID().uuidString)
        do {
            _ = try await client.createPaymentIntent([
                "amount": 500, "currency": "usd", "customer": .string(customer.id),
                "payment_method": "pm_card_chargeCustomerFail", "confirm": true, "off_session": true,
            ], idempotencyKey: UUID().uuidString)
            Issue.record("a declining card was charged")
        } catch {
            guard case .refused(let refusal) = error else { Issue.record("expected a refusal, got \(error)"); return }
            #expect(refusal.httpStatus == 402)
            #expect(refusal.code == "card_declined")
            #expect(!error.description.contains(Localstripe.secretKey))
        }
    }

    @Test func invalidParamsAndNonJSONErrorsAreDecoded() async throws {
        let client = try Localstripe.client()
        do {
            let _: Customer = try await client.send(.post, "/v1/customers", ["bogus_param": "1"], idempotencyKey: UUID().uuidString)
            Issue.record("an unknown param was accepted")
        } catch {
            guard case .refused(let refusal) = error else { Issue.record("expected a refusal, got \(error)"); return }
            #expect(refusal.httpStatus == 400)
            #expect(refusal.type == "invalid_request_error")
            #expect(refusal.message?.contains("bogus_param") == true)
        }
        // localstripe answers unknown paths with a plain-text 404.
        do {
            let _: Customer = try await client.send(.get, "/v1/no_such_resource/x")
            Issue.record("an unknown path answered")
        } catch {
            guard case .refused(let refusal) = error else { Issue.record("expected a refusal, got \(error)"); return }
            #expect(refusal.httpStatus == 404)
            #expect(refusal.message?.contains("not Stripe's error envelope") == true)
        }
    }

    @Test func subscriptionsChangeQuantityScheduleCancellationAndCancel() async throws {
        let client = try Localstripe.client()
        let priceID = "price_team_month_\(UUID().uuidString.prefix(6))"
        // localstripe has plans, not prices: create one under the configured price id.
        let _: Price = try await client.send(.post, "/v1/plans", [
            "id": .string(priceID), "amount": 1500, "currency": "usd", "interval": "month", "product": ["name": "Team"],
        ], idempotencyKey: UUID().uuidString)
        let customer = try await client.createCustomer(email: "s@acme.example", name: "S", tenantID: "t", idempotencyKey: UUID().uuidString)
        _ = try await client.sendRaw(.post, "/v1/payment_methods/pm_card_visa/attach", ["customer": .string(customer.id)],
                                     idempotencyKey: UUID().uuidString)
        let _: Customer = try await client.send(.post, "/v1/customers/\(customer.id)", [
            "invoice_settings": ["default_payment_method": "pm_card_visa"],
        ], idempotencyKey: UUID().uuidString)
        let created: Subscription = try await client.send(.post, "/v1/subscriptions", [
            "customer": .string(customer.id), "items": [["plan": .string(priceID), "quantity": 3]],
            "metadata": ["tenant_id": "t"],
        ], idempotencyKey: UUID().uuidString)
        #expect(created.status == "active")
        #expect(created.items.data.first?.priceID == priceID)
        #expect(created.items.data.first?.quantity == 3)

        let item = try #require(created.items.data.first)
        let more = try await client.updateSubscription(created.id, ["items": [["id": .string(item.id), "quantity": 5]]],
                                                       idempotencyKey: "seats:\(created.id):5")
        #expect(more.items.data.first?.quantity == 5)

        let scheduled = try await client.updateSubscription(created.id, ["cancel_at_period_end": true], idempotencyKey: UUID().uuidString)
        #expect(scheduled.cancelAtPeriodEnd == true)
        let resumed = try await client.updateSubscription(created.id, ["cancel_at_period_end": false], idempotencyKey: UUID().uuidString)
        #expect(resumed.cancelAtPeriodEnd == false)
        #expect(try await client.retrieveSubscription(created.id).items.data.first?.quantity == 5)

        let canceled = try await client.cancelSubscription(created.id)
        #expect(canceled.status == "canceled")
    }

    @Test func eventsAreListedAfterATimeAndPaged() async throws {
        let client = try Localstripe.client()
        let before = Int(Date().timeIntervalSince1970) - 1
        let tenant = UUID().uuidString.lowercased()
        let customer = try await client.createCustomer(email: "e@acme.example", name: "E", tenantID: tenant, idempotencyKey: UUID().uuidString)
        var seen: [StripeEvent] = []
        var cursor: String?
        repeat {
            let page = try await client.listEvents(createdAfter: before, startingAfter: cursor, limit: 2)
            seen += page.events
            cursor = page.hasMore ? page.events.last?.id : nil
        } while cursor != nil
        #expect(Set(seen.map(\.id)).count == seen.count)
        let created = seen.first { $0.type == "customer.created" && String(decoding: $0.raw, as: UTF8.self).contains(customer.id) }
        #expect(created != nil)
        #expect(created?.livemode == false)
    }
}

@Suite struct TransportFailureTests {
    @Test func connectionRefusedIsUnavailableAfterRetries() async throws {
        // A port nothing listens on.
        let attempts = Counter()
        let client = StripeClient(
            configuration: StripeConfiguration(apiBase: "http://127.0.0.1:1", secretKey: "sk_test_x", timeout: .milliseconds(300),
                                               retry: RetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(1), maxDelay: .milliseconds(2))),
            sleep: { _ in attempts.increment() })
        do {
            _ = try await client.createCustomer(email: "a@b.c", name: "A", tenantID: "t", idempotencyKey: "k")
            Issue.record("a closed port answered")
        } catch {
            guard case .unavailable = error else { Issue.record("expected unavailable, got \(error)"); return }
            #expect(!error.description.contains("sk_test_x"))
        }
        #expect(attempts.value == 2)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
