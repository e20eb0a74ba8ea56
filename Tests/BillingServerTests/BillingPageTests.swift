import Billing
import BillingCore
import BillingServer
import BillingStore
import BillingDevSupport
import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import JSONRPC
import Logging
import NIOCore
import ServiceLifecycle
import StripeAPI
import StripeStandIn
import Testing

/// `GET /billing` as served: the page, its script and styles, their headers, and the catalog the server renders in.
@Suite struct BillingPageTests {
    @Test func thePageIsRenderedWithTheCatalogAndStrictHeaders() async throws {
        try await TestServer.run { client, _ in
            let page = try await client.execute(uri: "/billing", method: .get)
            #expect(page.status == .ok)
            #expect(page.headers[.contentType] == "text/html; charset=utf-8")
            #expect(page.headers[.cacheControl] == "no-store")
            let policy = page.headers[.contentSecurityPolicy] ?? ""
            #expect(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'") && policy.contains("frame-ancestors 'none'"))
            #expect(page.headers[.init("Referrer-Policy")!] == "no-referrer")
            let html = String(buffer: page.body)
            // Every plan of the catalog, with its prices and seats, rendered by the server.
            #expect(html.contains("<option value=\"team\">Team (USD 15.00 per seat per month or USD 150.00 per seat per year)</option>"))
            #expect(html.contains("3 to 50 seats; 14-day free trial"))
            #expect(html.contains("billed by invoice to a saved card"))
            #expect(html.contains("min=\"500\" max=\"1000000\""))
            // The catalog for the script is JSON that cannot close its script element.
            #expect(try Self.catalog(in: html)["defaultPlan"] == "free")

            let script = try await client.execute(uri: "/billing/app.js", method: .get)
            #expect(script.status == .ok && script.headers[.contentType] == "text/javascript; charset=utf-8")
            #expect(String(buffer: script.body).contains("sessionStorage"))
            let styles = try await client.execute(uri: "/billing/app.css", method: .get)
            #expect(styles.status == .ok && styles.headers[.contentType] == "text/css; charset=utf-8")
        }
    }

    /// The catalog the page hands its script: the JSON up to the first `</script>` after its opening tag.
    static func catalog(in html: String) throws -> JSONValue {
        let start = try #require(html.range(of: "<script type=\"application/json\" id=\"catalog\">"))
        let end = try #require(html.range(of: "</script>", range: start.upperBound..<html.endIndex))
        return try JSONDecoder().decode(JSONValue.self, from: Data(html[start.upperBound..<end.lowerBound].utf8))
    }

    @Test func catalogTextIsEscapedInThePage() async throws {
        let root = TestPaths.repositoryRoot
        var catalog = try PlanCatalog.load(json: try Data(contentsOf: root.appendingPathComponent("config/plans.json")))
        catalog.plans[1].name = "Pro </script><script>alert(1)</script> & co"
        let view = try await BillingPage(directory: root.appendingPathComponent("web"), catalog: catalog).document
        #expect(!view.contains("</script><script>alert(1)"))
        #expect(view.contains("Pro &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"))
        #expect(try Self.catalog(in: view)["plans"]?[1]?["name"] == "Pro </script><script>alert(1)</script> & co")
        let opening = try #require(view.range(of: "<script type=\"application/json\" id=\"catalog\">"))
        let json = view[opening.upperBound...].prefix { $0 != "<" }
        #expect(view[opening.upperBound...].dropFirst(json.count).hasPrefix("</script>\n</body>"), "a '<' inside the catalog's JSON")
    }
}

/// `billing.checkoutSession`: what the page waits on after Checkout.
@Suite struct CheckoutSessionAPITests {
    @Test func aTopUpIsPendingUntilItsWebhookCreditsItAndOtherTenantsCannotSeeIt() async throws {
        try await TestServer.run(extra: EventHarness.extra, stripe: true) { client, server in
            let harness = EventHarness(client: client, server: server)
            let tenant = try await server.provision(client)
            let admin = try await server.token(.admin, tenant: tenant)
            let member = try await server.token(.member, tenant: tenant)
            let started = try await client.rpc("billing.topUp", ["credits": 700], token: admin)
            let session = try #require(started["result"]?["sessionId"]?.stringValue)

            let open = try await client.rpc("billing.checkoutSession", ["sessionId": .string(session)], token: member)
            #expect(open["result"]?["purpose"] == "credit_topup")
            #expect(open["result"]?["status"] == "open")
            #expect(open["result"]?["plan"] == .null)
            #expect(open["result"]?["topUp"]?["status"] == "pending")
            #expect(open["result"]?["topUp"]?["credits"] == 700)
            #expect(open["result"]?["topUp"]?["amount"] == 700)
            #expect(open["result"]?["topUp"]?["paidAt"] == .null)

            // Paid on Stripe's page, still pending here until the webhook is processed.
            _ = await server.standIn!.complete(session, outcome: .pay)
            let paidButUnconfirmed = try await client.rpc("billing.checkoutSession", ["sessionId": .string(session)], token: member)
            #expect(paidButUnconfirmed["result"]?["topUp"]?["status"] == "pending")
            try await harness.deliverStandInEvents()
            let credited = try await client.rpc("billing.checkoutSession", ["sessionId": .string(session)], token: member)
            #expect(credited["result"]?["status"] == "complete")
            #expect(credited["result"]?["topUp"]?["status"] == "paid")
            #expect(credited["result"]?["topUp"]?["paidAt"]?.stringValue != nil)

            // A subscription checkout carries its plan and no top-up.
            let checkout = try await client.rpc("billing.checkout", ["plan": "team", "seats": 4], token: admin)
            let subscription = try #require(checkout["result"]?["sessionId"]?.stringValue)
            let planned = try await client.rpc("billing.checkoutSession", ["sessionId": .string(subscription)], token: admin)
            #expect(planned["result"]?["purpose"] == "subscription")
            #expect(planned["result"]?["plan"] == "team")
            #expect(planned["result"]?["seats"] == 4)
            #expect(planned["result"]?["topUp"] == .null)

            // Another tenant's session, or none: NOT_FOUND; an empty id: invalid params.
            let other = try await server.provision(client, name: "Other")
            let stranger = try await server.token(.admin, tenant: other)
            let foreign = try await client.rpc("billing.checkoutSession", ["sessionId": .string(session)], token: stranger)
            #expect(foreign.errorName == "NOT_FOUND")
            let empty = try await client.rpc("billing.checkoutSession", ["sessionId": ""], token: admin)
            #expect(empty.errorCode == -32602)
        }
    }
}

/// The billing page in headless Chromium (driven over WebDriver by Debian's chromedriver) against the real server,
/// the Stripe stand-in's checkout pages and its signed webhooks over HTTP. Each step leaves a screenshot in
/// `test-artifacts/billing-page/`.
@Suite(.serialized) struct BillingPageBrowserTests {
    static let artifacts = TestPaths.repositoryRoot.appendingPathComponent("test-artifacts/billing-page")
    static let webhookSecret = "whsec_browser_tests"

    /// The server and the stand-in on real ports that know each other: Checkout returns the browser to the server's
    /// page, and the stand-in's webhooks reach the server's endpoint.
    struct LiveSystem: Sendable {
        let url: String
        let standInURL: String
        let standIn: StandInState
        let server: TestServer

        static func run(_ body: @escaping @Sendable (LiveSystem) async throws -> Void) async throws {
            let database = try await TestCluster.shared.freshDatabase()
            let (serverPort, standInPort) = (try freeLocalPort(), try freeLocalPort())
            let url = "http://127.0.0.1:\(serverPort)"
            let standInURL = "http://127.0.0.1:\(standInPort)"
            let catalog = try TestServer.configuration(database).loadCatalog()
            let state = StandInState(configuration: StandInConfiguration(
                publicURL: standInURL, webhookURL: "\(url)/webhooks/stripe", webhookSecret: webhookSecret,
                prices: catalog.standInPrices, webhookRetryInitial: .milliseconds(200), clock: Date.init))
            let configuration = try TestServer.configuration(database, extra: [
                "BILLING_HTTP_PORT": String(serverPort), "BILLING_PUBLIC_URL": url,
                "STRIPE_SECRET_KEY": "sk_test_browser", "STRIPE_API_BASE": standInURL, "STRIPE_WEBHOOK_SECRETS": webhookSecret,
                "BILLING_STRIPE_RETRY_INITIAL_MS": "1",
            ])
            let services = ServiceGroup(configuration: .init(
                services: [buildStandInApplication(state: state, port: standInPort), try await buildApplication(configuration: configuration)],
                logger: Logger(label: "browser-tests")))
            let system = LiveSystem(
                url: url, standInURL: standInURL, standIn: state,
                server: TestServer(database: database, tokens: await TokenAuthority(secrets: [TestServer.secrets[0]]), standIn: state, stripe: nil))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await services.run() }
                defer { group.cancelAll() }
                try await system.waitUntilServing()
                try await body(system)
            }
        }

        func waitUntilServing() async throws {
            for _ in 0..<100 {
                let server = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "\(url)/healthz"), timeout: .seconds(1))
                let standIn = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "\(standInURL)/checkout/none"), timeout: .seconds(1))
                if server?.status == .ok, standIn?.status == .notFound { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw TestFailure("the server or the stand-in did not start")
        }

        /// One JSON-RPC call over HTTP; the decoded response object.
        func rpc(_ method: String, _ params: [String: JSONValue]? = nil, token: String) async throws -> JSONValue {
            var call: [String: JSONValue] = ["jsonrpc": "2.0", "id": 1, "method": .string(method)]
            if let params { call["params"] = .object(params) }
            var request = HTTPClientRequest(url: "\(url)/rpc")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(JSONValue.object(call))))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            return try JSONDecoder().decode(JSONValue.self, from: Data(buffer: try await response.body.collect(upTo: 1 << 20)))
        }

        func provision(name: String = "Browser Co") async throws -> UUID {
            let tenant = UUID()
            let answer = try await rpc(
                "tenants.provision", ["tenantId": .string(tenant.uuidString), "name": .string(name), "email": "billing@browser.example"],
                token: try await server.token(.service))
            guard answer["result"]?["created"] == true else { throw TestFailure("provisioning failed: \(answer)") }
            return tenant
        }
    }

    /// A live system with a provisioned tenant and its admin's token; records an issue instead when no browser is
    /// installed.
    func withLiveSystem(_ body: @escaping @Sendable (LiveSystem, UUID, String) async throws -> Void) async throws {
        guard Browser.isInstalled else {
            Issue.record("Chromium and chromedriver are missing: run `scripts/install-deps.sh browser` (make test does)")
            return
        }
        try await LiveSystem.run { system in
            let tenant = try await system.provision()
            try await body(system, tenant, try await system.server.token(.admin, tenant: tenant, ttl: .seconds(900)))
        }
    }

    /// Saves a screenshot of the step, scrolled to `selector` when given.
    func snap(_ browser: Browser, _ name: String, showing selector: String? = nil) async throws {
        if let selector {
            try await browser.run("document.querySelector(arguments[0]).scrollIntoView({block: 'start'})", [.string(selector)])
        }
        try await browser.screenshot(to: Self.artifacts.appendingPathComponent("\(name).png"))
    }

    @Test func anAdminSubscribesTopsUpAndChangesSeatsAndAMemberOnlyReads() async throws {
        try await withLiveSystem { system, tenant, admin in
            let member = try await system.server.token(.member, tenant: tenant, ttl: .seconds(900))
            try await Browser.withSession { browser in
                // The token arrives in the fragment, moves to sessionStorage, and leaves the address bar.
                try await browser.open("\(system.url)/billing#token=\(admin)")
                try await browser.waitForText("#plan-name", containing: "Free")
                #expect(try await browser.currentURL() == "\(system.url)/billing")
                #expect(try await browser.run("return sessionStorage.getItem('billing.token')") == .string(admin))
                #expect(try await browser.element("#credit-balance").text() == "0")
                try await snap(browser, "01-admin-opens-the-page")

                // A first subscription goes through the stand-in's Checkout and comes back active.
                try await browser.element("#plan-select option[value='team']").click()
                try await browser.element("#plan-submit").click()
                try await browser.wait("the stand-in's checkout page") { try await $0.currentURL().hasPrefix("\(system.standInURL)/checkout/") }
                try await snap(browser, "02-checkout-for-team")
                try await browser.element("#pay").click()
                try await browser.waitForText("#plan-name", containing: "Team, billed monthly", timeout: .seconds(30))
                try await browser.waitForText("#notice", containing: "Your subscription to Team is")
                #expect(try await browser.element("#seats").text() == "3")
                #expect(try await browser.element("#seat-range").text() == "(3 to 50 on Team)")
                try await snap(browser, "03-subscribed-to-team")

                // A top-up: while Stripe's webhooks are held the page says the payment is processing and the balance
                // stays; once they land, the balance rises by what was bought.
                await system.standIn.holdWebhooks()
                let credits = try await browser.element("#topup-credits")
                try await credits.clear()
                try await credits.type("700")
                try await browser.element("#topup-submit").click()
                try await browser.wait("the top-up's checkout page") { try await $0.currentURL().hasPrefix("\(system.standInURL)/checkout/") }
                #expect(try await browser.element("#total").text() == "7.00 USD")
                try await snap(browser, "04-checkout-for-700-credits")
                try await browser.element("#pay").click()
                try await browser.waitForText("#notice", containing: "Payment processing")
                #expect(try await browser.currentURL().hasPrefix("\(system.url)/billing?checkout=cs_"))
                #expect(try await browser.element("#credit-balance").text() == "0")
                #expect(await system.standIn.heldWebhookCount() > 0, "the stand-in sent the top-up's webhooks anyway")
                let unconfirmed = try await system.rpc("billing.credits", token: admin)
                #expect(unconfirmed["result"]?["balance"]?["available"] == 0)
                try await snap(browser, "05-payment-processing")
                await system.standIn.releaseWebhooks()
                try await browser.waitForText("#credit-balance", containing: "700", timeout: .seconds(30))
                try await browser.waitForText("#notice", containing: "700 credits were added. Your balance is now 700 credits.")
                #expect(try await browser.element("#ledger tbody").text().contains("+700"))
                #expect(try await browser.currentURL() == "\(system.url)/billing")
                let wallet = try await system.rpc("billing.credits", token: admin)
                #expect(wallet["result"]?["balance"]?["available"] == 700)
                try await snap(browser, "06-balance-after-the-webhook")

                // Seats with the keyboard only: Tab reaches the field, Enter submits.
                try await browser.run("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
                var reached = false
                for _ in 0..<40 where !reached {
                    try await browser.activeElement().type(Browser.Key.tab)
                    reached = try await browser.run("return document.activeElement.id") == "seats-input"
                }
                #expect(reached, "Tab never reached the seats field")
                let field = try await browser.activeElement()
                try await field.clear()
                try await field.type("5" + Browser.Key.enter)
                try await browser.waitForText("#notice", containing: "Seats changed to 5.")
                #expect(try await browser.element("#seats").text() == "5")
                try await snap(browser, "07-seats-changed-by-keyboard", showing: "#notice")

                // The server's refusal, in words.
                try await field.clear()
                try await field.type("51" + Browser.Key.enter)
                let problem = try await browser.waitForText("#problem", containing: "between 3 and 50")
                #expect(problem.hasPrefix("Seats must be between 3 and 50"), "\(problem)")
                #expect(try await browser.run("return document.getElementById('notice').textContent") == "", "the earlier success still shows")
                #expect(try await browser.element("#seats").text() == "5")
                try await snap(browser, "08-seats-refused", showing: "#problem")

                // Phone width: nothing wider than the screen.
                try await browser.setWindow(width: 390, height: 844)
                try await browser.open("\(system.url)/billing")
                try await browser.waitForText("#credit-balance", containing: "700")
                let overflow = try await browser.run("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
                #expect(overflow == 0, "the page is \(overflow) px wider than a phone's screen")
                try await snap(browser, "09-phone-width")

                // A member sees the same billing and no control to change it.
                try await browser.run("sessionStorage.clear()")
                try await browser.setWindow(width: 1024, height: 1400)
                try await browser.open("about:blank")
                try await browser.open("\(system.url)/billing#token=\(member)")
                try await browser.waitForText("#credit-balance", containing: "700")
                #expect(try await browser.element("#seats").text() == "5")
                #expect(try await browser.element("#plan-name").text() == "Team, billed monthly")
                // (Paging through older entries is reading, not changing: those buttons are the only ones.)
                #expect(try await browser.elements("main button:not(.more), main input, main select, main form").isEmpty)
                #expect(try await browser.element("#read-only").text().contains("Owners and admins can change it"))
                try await snap(browser, "10-member-reads-only")

                // Older activity pages in, ten entries at a time.
                let operatorToken = try await system.server.token(.operator)
                for n in 1...10 {
                    let granted = try await system.rpc("credits.grant", [
                        "tenantId": .string(tenant.uuidString), "amount": 1, "reason": .string("goodwill \(n)"), "idempotencyKey": .string("page-\(n)"),
                    ], token: operatorToken)
                    #expect(granted["result"] != nil, "\(granted)")
                }
                try await browser.open("about:blank")
                try await browser.open("\(system.url)/billing")
                try await browser.waitForText("#credit-balance", containing: "710")
                let rows = "return document.querySelectorAll('#ledger tbody tr').length"
                #expect(try await browser.run(rows) == 10)
                try await browser.element("#ledger-more").click()
                try await browser.wait("the older entry") { try await $0.run(rows) == 11 }
                #expect(try await browser.element("#ledger tbody").text().contains("+700"))
                #expect(try await browser.run("return document.getElementById('ledger-more').hidden") == true)
                try await snap(browser, "10b-older-activity", showing: "#credits")
            }
        }
    }

    /// An invoice the saved card could not pay without 3-D Secure: the page links it (a signed link, no sign-in),
    /// its view has the payment link, leaving the payment page says it is still due, and paying it comes back to the
    /// page, which waits for Stripe and then says it is paid.
    /// Login CSRF: a link carrying someone else's admin token must not quietly replace the sign-in in use (the card
    /// saved next would land in their workspace). The page names the workspace, and asks before switching.
    @Test func aLinkForAnotherWorkspaceAsksBeforeReplacingTheSignIn() async throws {
        try await withLiveSystem { system, tenant, admin in
            let other = try await system.provision(name: "Mallory Ltd")
            let theirs = try await system.server.token(.admin, tenant: other, ttl: .seconds(900))
            let stored = "return sessionStorage.getItem('billing.token')"
            try await Browser.withSession { browser in
                try await browser.open("\(system.url)/billing#token=\(admin)")
                try await browser.waitForText("#title", containing: "Billing for Browser Co")
                #expect(try await browser.element("#who").text().contains("Workspace \"Browser Co\""))

                // A fresh token for the same workspace and user replaces the stored one without a question.
                try await Task.sleep(for: .seconds(1.1))
                let fresh = try await system.server.token(.admin, tenant: tenant, ttl: .seconds(900))
                #expect(fresh != admin)
                try await browser.open("about:blank")
                try await browser.open("\(system.url)/billing#token=\(fresh)")
                try await browser.waitForText("#title", containing: "Billing for Browser Co")
                #expect(try await browser.run("return document.getElementById('switch') === null") == true)
                #expect(try await browser.run(stored) == .string(fresh))

                // Another workspace's link asks, naming both; staying keeps the sign-in and the workspace.
                try await browser.open("about:blank")
                try await browser.open("\(system.url)/billing#token=\(theirs)")
                let question = try await browser.waitForText("#switch-text", containing: "Mallory Ltd")
                #expect(question.contains("\"Browser Co\"") && question.contains("\"Mallory Ltd\""), "\(question)")
                #expect(try await browser.currentURL() == "\(system.url)/billing", "the offered token stays in the address bar")
                #expect(try await browser.run(stored) == .string(fresh))
                try await snap(browser, "11-another-workspace-asks", showing: "#switch")
                try await browser.element("#switch-keep").click()
                try await browser.waitForText("#title", containing: "Billing for Browser Co")
                #expect(try await browser.run(stored) == .string(fresh))
                #expect(try await browser.run("return document.getElementById('switch') === null") == true)

                // Switching, once confirmed, signs in to the other workspace and says so at the top.
                try await browser.open("about:blank")
                try await browser.open("\(system.url)/billing#token=\(theirs)")
                _ = try await browser.waitForText("#switch-accept", containing: "Switch to \"Mallory Ltd\"")
                try await browser.element("#switch-accept").click()
                try await browser.waitForText("#title", containing: "Billing for Mallory Ltd")
                #expect(try await browser.run(stored) == .string(theirs))
                try await snap(browser, "12-switched-after-asking")
            }
        }
    }

    @Test func anInvoiceNeedingConfirmationIsPaidThroughItsLinkAndThePageFollowsIt() async throws {
        try await withLiveSystem { system, tenant, admin in
            // A card whose off-session payments need authentication, saved through the stand-in's setup page.
            let setup = try await system.rpc("billing.setupPaymentMethod", token: admin)
            _ = await system.standIn.complete(try #require(setup["result"]?["sessionId"]?.stringValue), outcome: .authenticated)
            var subscribed: JSONValue = .null
            for _ in 0..<100 {
                subscribed = try await system.rpc("billing.subscribeByInvoice", ["plan": "enterprise", "seats": 5], token: admin)
                if subscribed["result"] != nil { break }
                // The card is saved once its webhook has landed.
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(subscribed["result"]?["plan"] == "enterprise", "\(subscribed)")
            // The invoice job charges the card; Stripe asks for authentication, so the invoice gets a payment link.
            let (ran, ranOutput, errors) = try await Billingd.run(["invoices", "run", "--at", Date().addingTimeInterval(5).formatted(.iso8601)], environment: [
                "DATABASE_URL": system.server.database.appURL.secretURLString, "STRIPE_SECRET_KEY": "sk_test_browser",
                "STRIPE_API_BASE": system.standInURL, "BILLING_PUBLIC_URL": system.url,
            ])
            #expect(ran == 0, "\(errors)")
            #expect(ranOutput.contains("action required"), "\(ranOutput) \(errors)")
            let invoices = try await system.rpc("billing.invoices", token: admin)
            let invoice = try #require(invoices["result"]?["invoices"]?[0])
            #expect(invoice["status"] == "action_required", "\(invoice)")
            let number = try #require(invoice["number"]?.stringValue)

            try await Browser.withSession { browser in
                try await browser.open("\(system.url)/billing#token=\(admin)")
                try await browser.waitForText("#invoice-list", containing: "Needs your confirmation")
                let link = try await browser.element("#invoice-list tbody a")
                #expect(try await link.text() == number)
                let href = try #require(try await link.property("href").stringValue)
                #expect(href.contains("signature="), "\(href)")
                try await snap(browser, "11-invoice-needs-confirmation", showing: "#invoices")

                // The invoice opens from its link alone (no token), with the way to pay it.
                try await browser.run("sessionStorage.clear()")
                try await browser.open(href)
                try await browser.waitForText("h1", containing: number)
                #expect(try await browser.element("#status").text() == "action_required")
                try await snap(browser, "12-invoice-view-with-payment-link")

                // Leaving the payment page without paying: back on the billing page, still due.
                try await browser.element("#pay-link").click()
                try await browser.wait("the invoice's checkout page") { try await $0.currentURL().hasPrefix("\(system.standInURL)/checkout/") }
                try await browser.element("#cancel").click()
                try await browser.wait("the billing page") { try await $0.currentURL().hasPrefix("\(system.url)/billing") }
                // The token was cleared above: the page asks for a sign-in, so it is given again, keeping the query.
                let back = try await browser.currentURL()
                #expect(back.contains("invoice=") && back.contains("canceled=true"), "\(back)")
                try await browser.open("about:blank")
                try await browser.open("\(back)#token=\(admin)")
                try await browser.waitForText("#problem", containing: "\(number) is still due")

                // Paying it: the page waits for Stripe's webhook, then says it is paid.
                try await browser.open(href)
                try await browser.element("#pay-link").click()
                try await browser.wait("the invoice's checkout page") { try await $0.currentURL().hasPrefix("\(system.standInURL)/checkout/") }
                try await browser.element("#pay").click()
                try await browser.waitForText("#notice", containing: "Invoice \(number) is paid.", timeout: .seconds(30))
                #expect(try await browser.currentURL() == "\(system.url)/billing")
                #expect(try await browser.element("#invoice-list").text().contains("Paid"))
                try await snap(browser, "13-invoice-paid", showing: "#notice")
            }
            let after = try await system.rpc("billing.invoices", token: admin)
            #expect(after["result"]?["invoices"]?[0]?["status"] == "paid")
        }
    }
}
