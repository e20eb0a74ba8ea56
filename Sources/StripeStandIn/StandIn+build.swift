import Foundation
import Hummingbird
import Logging
import NIOCore
import StripeAPI

/// The stand-in as an HTTP server: Stripe's API subset under `/v1`, the hosted Checkout page, and a control
/// endpoint for fault injection. `billingd stand-in` runs it alone; `billingd dev` runs it in-process.
public func buildStandInApplication(
    state: StandInState, host: String = "127.0.0.1", port: Int, logger: Logger = Logger(label: "stand-in")
) -> some ApplicationProtocol {
    let router = Router()
    for method in [HTTPRequest.Method.get, .post, .delete] {
        router.on("/v1/**", method: method) { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            let response = await state.handle(StandInRequest(
                method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "",
                body: String(buffer: body), authorization: request.headers[.authorization],
                idempotencyKey: request.headers[.init("Idempotency-Key")!]))
            var headers = HTTPFields()
            for (name, value) in response.headers { headers[.init(name)!] = value }
            return Response(status: .init(code: response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: response.body)))
        }
    }
    router.get("/checkout/{id}") { _, context -> Response in
        let id = try context.parameters.require("id")
        guard let view = await state.checkoutView(id) else { return html(.notFound, page("Not found", "<p>No such Checkout Session.</p>")) }
        return html(.ok, checkoutPage(view))
    }
    router.post("/checkout/{id}") { request, context -> Response in
        let id = try context.parameters.require("id")
        let form = FormParameters.decodePairs(String(buffer: try await request.body.collect(upTo: 64 << 10)))
        guard let raw = form.first(where: { $0.0 == "outcome" })?.1, let outcome = StandInState.CheckoutOutcome(rawValue: raw) else {
            return html(.badRequest, page("Bad request", "<p>Choose pay, decline, authenticate or cancel.</p>"))
        }
        switch await state.complete(id, outcome: outcome) {
        case .redirect(let url):
            return Response(status: .seeOther, headers: [.location: url])
        case .challenge:
            return html(.ok, challengePage(id))
        case .message(let text):
            guard let view = await state.checkoutView(id) else { return html(.notFound, page("Not found", "<p>\(escape(text))</p>")) }
            return html(.ok, checkoutPage(view, notice: text))
        }
    }
    router.get("/portal/{id}") { _, context -> Response in
        let id = try context.parameters.require("id")
        guard let view = await state.portalView(id) else { return html(.notFound, page("Not found", "<p>No such portal session.</p>")) }
        return html(.ok, portalPage(view))
    }
    router.post("/portal/{id}") { request, context -> Response in
        let id = try context.parameters.require("id")
        let form = Dictionary(FormParameters.decodePairs(String(buffer: try await request.body.collect(upTo: 64 << 10))), uniquingKeysWith: { $1 })
        let notice = await state.portalAction(
            id, action: form["action"] ?? "", subscription: form["subscription"] ?? "", value: form["value"])
        guard let view = await state.portalView(id) else { return html(.notFound, page("Not found", "<p>No such portal session.</p>")) }
        return html(.ok, portalPage(view, notice: notice))
    }
    router.post("/_stand-in/faults") { request, _ -> Response in
        let body = try await request.body.collect(upTo: 64 << 10)
        let fault = try JSONDecoder().decode(StandInFault.self, from: Data(body.readableBytesView))
        await state.inject(fault)
        return Response(status: .noContent)
    }
    router.post("/_stand-in/webhooks/hold") { _, _ -> Response in
        await state.holdWebhooks()
        return Response(status: .noContent)
    }
    router.post("/_stand-in/webhooks/release") { _, _ -> Response in
        await state.releaseWebhooks()
        return Response(status: .noContent)
    }
    router.delete("/_stand-in/faults") { _, _ -> Response in
        await state.clearFaults()
        return Response(status: .noContent)
    }
    return Application(
        router: router, configuration: .init(address: .hostname(host, port: port), serverName: "stripe-stand-in"), logger: logger)
}

func html(_ status: HTTPResponse.Status, _ body: String) -> Response {
    Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: body)))
}

func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

func page(_ title: String, _ content: String) -> String {
    """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>\(escape(title))</title>
    <style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}
    button{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem}
    .notice{background:#fee;border:1px solid #c33;padding:.5rem}</style></head>
    <body><p><strong>Stripe stand-in</strong> · test mode</p>\(content)</body></html>
    """
}

func money(_ amount: Int, _ currency: String) -> String {
    String(format: "%.2f %@", Double(amount) / 100, currency.uppercased())
}

func checkoutPage(_ view: StandInState.CheckoutView, notice: String? = nil) -> String {
    let lines = view.lines.map { "<li>\(escape($0))</li>" }.joined()
    let notice = notice.map { "<p class=\"notice\" role=\"alert\">\(escape($0))</p>" } ?? ""
    guard view.status == "open" else {
        return page("Checkout", "<h1>Checkout</h1>\(notice)<p>This session is \(escape(view.status)).</p>")
    }
    if view.mode == "setup" {
        return page("Save a card", """
            <h1>Save a card for future payments</h1>\(notice)
            <form method="post" action="/checkout/\(escape(view.id))">
              <button name="outcome" value="pay" id="pay">Save 4242 4242 4242 4242 (payments succeed)</button>
              <button name="outcome" value="saveDeclining" id="save-declining">Save 4000 0000 0000 0341 (payments declined)</button>
              <button name="outcome" value="authenticate" id="authenticate">Save 4000 0027 6000 3184 (payments need authentication)</button>
              <button name="outcome" value="cancel" id="cancel">Cancel and go back</button>
            </form>
            """)
    }
    return page("Checkout", """
        <h1>Checkout</h1>\(notice)
        <ul>\(lines)</ul>
        <p>Total: <strong id="total">\(money(view.amountTotal, view.currency))</strong>\(view.mode == "subscription" ? " per period" : "")</p>
        <form method="post" action="/checkout/\(escape(view.id))">
          <button name="outcome" value="pay" id="pay">Pay with 4242 4242 4242 4242 (succeeds)</button>
          <button name="outcome" value="decline" id="decline">Pay with 4000 0000 0000 0002 (declined)</button>
          <button name="outcome" value="authenticate" id="authenticate">Pay with 4000 0025 0000 3155 (3-D Secure)</button>
          <button name="outcome" value="cancel" id="cancel">Cancel and go back</button>
        </form>
        """)
}

func challengePage(_ id: String) -> String {
    page("Authenticate", """
        <h1>3-D Secure</h1><p>Your bank asks you to confirm this payment.</p>
        <form method="post" action="/checkout/\(escape(id))">
          <button name="outcome" value="authenticated" id="complete-authentication">Complete authentication</button>
          <button name="outcome" value="authentication_failed" id="fail-authentication">Fail authentication</button>
        </form>
        """)
}

func portalPage(_ view: StandInState.PortalView, notice: String? = nil) -> String {
    let notice = notice.map { "<p class=\"notice\" role=\"status\">\(escape($0))</p>" } ?? ""
    let back = view.returnURL.map { "<p><a id=\"return\" href=\"\(escape($0))\">Return to the product</a></p>" } ?? ""
    let subscriptions = view.subscriptions.map { line -> String in
        let form = "<form method=\"post\" action=\"/portal/\(escape(view.id))\"><input type=\"hidden\" name=\"subscription\" value=\"\(escape(line.subscriptionID))\">"
        let options = view.prices.map {
            "<option value=\"\(escape($0.id))\"\($0.id == line.priceID ? " selected" : "")>\(escape($0.productName)) per \(escape($0.interval ?? ""))</option>"
        }.joined()
        let cancel = line.cancelAtPeriodEnd
            ? "\(form)<button name=\"action\" value=\"renew\" id=\"renew\">Don't cancel</button></form>"
            : "\(form)<button name=\"action\" value=\"cancel\" id=\"cancel\">Cancel at period end</button></form>"
        return """
            <section><h2>\(escape(line.productName))</h2>
            <p>Status: \(escape(line.status))\(line.cancelAtPeriodEnd ? " (cancels at period end)" : ""). Seats: <span id="seats">\(line.quantity)</span></p>
            \(form)<label>Seats <input name="value" type="number" min="1" value="\(line.quantity)"></label>
            <button name="action" value="seats" id="change-seats">Change seats</button></form>
            \(form)<label>Plan <select name="value">\(options)</select></label>
            <button name="action" value="price" id="switch-plan">Switch plan</button></form>
            \(cancel)</section>
            """
    }.joined()
    return page("Billing portal", "<h1>Billing portal</h1>\(notice)\(subscriptions.isEmpty ? "<p>No subscriptions.</p>" : subscriptions)\(back)")
}
