import Billing
import BillingDevSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import JSONRPC
import StripeStandIn
import Testing

/// Plans billed by this server's own invoices: one invoice per tenant and period, credits first, gapless numbers.
@Suite struct InvoicingTests {
    @Test func invoicesAreIssuedOncePerPeriodWithCreditsFirstAndAHostedView() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let operatorToken = try await server.token(.operator)

            // Not through Stripe Checkout, and not without a saved card.
            let viaCheckout = try await client.rpc("billing.checkout", ["plan": "enterprise"], token: admin)
            #expect(viaCheckout.errorMessage.contains("billing.subscribeByInvoice"))
            let noCard = try await client.rpc("billing.subscribeByInvoice", ["plan": "enterprise", "seats": 5], token: admin)
            #expect(noCard.errorName == "PRECONDITION_FAILED")
            #expect(noCard.errorMessage.contains("billing.setupPaymentMethod"))

            try await harness.saveCard(tenant)
            _ = try await client.rpc("credits.grant", [
                "tenantId": .string(tenant.uuidString), "amount": 30000, "reason": "prepaid", "idempotencyKey": "prepaid",
            ], token: operatorToken)

            // Five seats at 40.00: the first invoice is paid by credits alone.
            let subscribed = try await client.rpc("billing.subscribeByInvoice", ["plan": "enterprise", "seats": 5], token: admin)
            #expect(subscribed["result"]?["plan"] == "enterprise", "\(subscribed)")
            #expect(subscribed["result"]?["creditBalance"] == 10000)
            let periodEnd = try #require(subscribed["result"]?["currentPeriodEnd"]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) })
            let first = try await client.rpc("billing.invoices", token: try await server.token(.member, tenant: tenant))
            let invoice = try #require(first["result"]?["invoices"]?[0])
            #expect(invoice["source"] == "billing")
            #expect(invoice["status"] == "paid")
            #expect(invoice["amountDue"] == 0)
            let number = try #require(invoice["number"]?.stringValue)
            let url = try #require(invoice["url"]?.stringValue)
            #expect(url.hasSuffix("/invoices/\(invoice["id"]?.stringValue ?? "")"))

            // The hosted view, for the tenant's admins only.
            let path = "/invoices/\(invoice["id"]?.stringValue ?? "")"
            let page = try await client.execute(uri: path, method: .get, headers: [.authorization: "Bearer \(admin)"])
            #expect(page.status == .ok)
            let html = String(buffer: page.body)
            #expect(html.contains(number) && html.contains("Enterprise, 5 seats") && html.contains("USD 200.00"))
            let forMember = try await client.execute(
                uri: path, method: .get, headers: [.authorization: "Bearer \(try await server.token(.member, tenant: tenant))"])
            #expect(forMember.status == .forbidden)
            let otherTenant = try await server.token(.admin, tenant: try await server.provision(client))
            #expect(try await client.execute(uri: path, method: .get, headers: [.authorization: "Bearer \(otherTenant)"]).status == .notFound)

            // Owners and admins are given a signed link that opens without a sign-in (members, above, the plain one).
            let signedURL = try #require(try await client.rpc("billing.invoices", token: admin)["result"]?["invoices"]?[0]?["url"]?.stringValue)
            let signed = try #require(URLComponents(string: signedURL))
            #expect(signed.queryItems?.map(\.name) == ["tenant", "expires", "signature"])
            let linkPath = { (components: URLComponents) in components.path + "?" + (components.percentEncodedQuery ?? "") }
            let opened = try await client.execute(uri: linkPath(signed), method: .get)
            #expect(opened.status == .ok)
            #expect(String(buffer: opened.body).contains(number))
            #expect(opened.headers[.cacheControl] == "private, no-store")
            #expect(opened.headers[.init("Referrer-Policy")!] == "no-referrer")
            #expect(opened.headers[.contentSecurityPolicy]?.hasPrefix("default-src 'none'") == true)
            // The link is for that invoice of that tenant only, and until it expires.
            var otherTenantLink = signed
            otherTenantLink.queryItems = signed.queryItems?.map { $0.name == "tenant" ? URLQueryItem(name: "tenant", value: UUID().uuidString.lowercased()) : $0 }
            let forged = try await client.execute(uri: linkPath(otherTenantLink), method: .get)
            #expect(forged.status == .forbidden)
            #expect(String(buffer: forged.body).contains("not valid"))
            let invoiceID = try #require(UUID(uuidString: invoice["id"]?.stringValue ?? ""))
            let stale = InvoiceLinks(secrets: [TestServer.secrets[0]], lifetime: .seconds(60))
                .url(publicURL: "", tenant: tenant, invoice: invoiceID, now: Date().addingTimeInterval(-120))
            let expired = try await client.execute(uri: stale, method: .get)
            #expect(expired.status == .forbidden)
            #expect(String(buffer: expired.body).contains("expired"))
            // Signed with the second (older) secret: still valid while it is configured.
            let rotated = InvoiceLinks(secrets: [TestServer.secrets[1]]).url(publicURL: "", tenant: tenant, invoice: invoiceID, now: Date())
            #expect(try await client.execute(uri: rotated, method: .get).status == .ok)

            // A one-off charge rides on the next invoice; the job at the next period issues it, once.
            _ = try await client.rpc("billing.addCharge", [
                "tenantId": .string(tenant.uuidString), "description": "Onboarding workshop", "amount": 5000, "idempotencyKey": "workshop",
            ], token: operatorToken)
            let environment = server.commandEnvironment
            let at = periodEnd.addingTimeInterval(60).formatted(.iso8601)
            let (status, output, errors) = try await Billingd.run(["invoices", "run", "--at", at], environment: environment)
            #expect(status == 0, "\(errors)")
            #expect(output.contains("issued 1 invoice(s)"), "\(output)")
            let (_, rerun, _) = try await Billingd.run(["invoices", "run", "--at", at], environment: environment)
            #expect(rerun.contains("issued 0 invoice(s)"))

            let second = try await client.rpc("billing.invoices", token: admin)
            let next = try #require(second["result"]?["invoices"]?[0])
            // 200.00 + 50.00, less the 100.00 of credits left: 150.00 due from the card.
            #expect(next["amountDue"] == 15000, "\(next)")
            // The same run charged the rest to the card: processing until Stripe confirms it.
            #expect(next["status"] == "processing")
            let nextNumber = try #require(next["number"]?.stringValue)
            #expect(Int(nextNumber.dropFirst(4)) == Int(number.dropFirst(4))! + 1)
            #expect(try await client.rpc("billing.status", token: admin)["result"]?["creditBalance"] == 0)
            // Stripe's confirmation makes it paid (credits and card).
            try await harness.deliverStandInEvents()
            #expect(try await client.rpc("billing.invoices", token: admin)["result"]?["invoices"]?[0]?["status"] == "paid")

            // Operators read them from the command line.
            let (listed, list, listErrors) = try await Billingd.run(["invoices", "list", "--tenant", tenant.uuidString], environment: environment)
            #expect(listed == 0, "\(listErrors)")
            #expect(list.contains(number) && list.contains(nextNumber))
            let nextID = try #require(next["id"]?.stringValue)
            let (shown, show, _) = try await Billingd.run(["invoices", "show", nextID, "--tenant", tenant.uuidString], environment: environment)
            #expect(shown == 0)
            #expect(show.contains("Onboarding workshop") && show.contains(nextNumber) && show.contains("paid"))
            #expect(try await harness.count(
                "SELECT count(*)::int FROM billing.invoice_charges WHERE tenant_id = '\(tenant)' AND invoice_id IS NOT NULL") == 1)
        }
    }

    /// Stripe refuses to charge less than its minimum (0.50 in USD), so credits that would leave less than that to
    /// the card are held back: the card pays the minimum and the rest of the credits stay in the wallet.
    @Test func creditsNeverLeaveLessThanStripesMinimumToTheCard() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            try await harness.saveCard(tenant)
            // 199.80 of credits against 200.00: applied whole, they would leave 0.20 to the card.
            _ = try await client.rpc("credits.grant", [
                "tenantId": .string(tenant.uuidString), "amount": 19980, "reason": "prepaid", "idempotencyKey": "prepaid",
            ], token: try await server.token(.operator))

            let subscribed = try await client.rpc("billing.subscribeByInvoice", ["plan": "enterprise", "seats": 5], token: admin)
            #expect(subscribed["result"]?["creditBalance"] == 30, "\(subscribed)")
            let invoice = try #require(try await client.rpc("billing.invoices", token: admin)["result"]?["invoices"]?[0])
            #expect(invoice["amountDue"] == 50)
            #expect(invoice["status"] == "open")
            // The collection run charges the card the minimum, which Stripe accepts.
            let (status, _, errors) = try await Billingd.run(["invoices", "run"], environment: server.commandEnvironment)
            #expect(status == 0, "\(errors)")
            #expect(try await client.rpc("billing.invoices", token: admin)["result"]?["invoices"]?[0]?["status"] == "processing")
            try await harness.deliverStandInEvents()
            #expect(try await client.rpc("billing.invoices", token: admin)["result"]?["invoices"]?[0]?["status"] == "paid")
        }
    }
}
