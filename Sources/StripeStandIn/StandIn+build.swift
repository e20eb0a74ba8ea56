import BillingCore
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
            return answer(await state.handle(StandInRequest(
                method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "",
                body: String(buffer: body), authorization: request.headers[.authorization],
                idempotencyKey: request.headers[.init("Idempotency-Key")!],
                stripeVersion: request.headers[.init("Stripe-Version")!])))
        }
    }
    router.get("/checkout/{id}") { _, context -> Response in
        let id = try context.parameters.require("id")
        guard let view = await state.checkoutView(id) else { return html(.notFound, page("Not found", "No such Checkout Session.")) }
        return html(.ok, checkoutPage(view))
    }
    router.post("/checkout/{id}") { request, context -> Response in
        let id = try context.parameters.require("id")
        let form = FormParameters.decodePairs(String(buffer: try await request.body.collect(upTo: 64 << 10)))
        guard let raw = form.first(where: { $0.0 == "outcome" })?.1, let outcome = StandInState.CheckoutOutcome(rawValue: raw) else {
            return html(.badRequest, page("Bad request", "Choose pay, decline, authenticate or cancel."))
        }
        switch await state.complete(id, outcome: outcome) {
        case .redirect(let url):
            return Response(status: .seeOther, headers: [.location: url])
        case .challenge:
            return html(.ok, challengePage(id))
        case .message(let text):
            guard let view = await state.checkoutView(id) else { return html(.notFound, page("Not found", text)) }
            return html(.ok, checkoutPage(view, notice: text))
        }
    }
    router.get("/portal/{id}") { _, context -> Response in
        let id = try context.parameters.require("id")
        guard let view = await state.portalView(id) else { return html(.notFound, page("Not found", "No such portal session.")) }
        return html(.ok, portalPage(view))
    }
    router.post("/portal/{id}") { request, context -> Response in
        let id = try context.parameters.require("id")
        let form = try await formFields(request)
        let notice = await state.portalAction(
            id, action: form["action"] ?? "", subscription: form["subscription"] ?? "", value: form["value"])
        guard let view = await state.portalView(id) else { return html(.notFound, page("Not found", "No such portal session.")) }
        return html(.ok, portalPage(view, notice: notice))
    }
    router.get("/invoice/{id}") { _, context -> Response in
        let id = try context.parameters.require("id")
        guard let view = await state.invoiceView(id) else { return html(.notFound, page("Not found", "No such invoice.")) }
        return html(.ok, invoicePage(view))
    }
    router.post("/invoice/{id}") { request, context -> Response in
        let id = try context.parameters.require("id")
        let form = try await formFields(request)
        let method = form["card"] == "declines" ? "pm_card_chargeDeclined" : "pm_card_visa"
        let notice = await state.payInvoice(id, paymentMethod: method)
        guard let view = await state.invoiceView(id) else { return html(.notFound, page("Not found", notice)) }
        return html(.ok, invoicePage(view, notice: notice))
    }
    // The control endpoints change what the stand-in does: tools and tests reach them, a page on another site not.
    let control = router.group("_stand-in").add(middleware: NotFromOtherSites())
    control.post("faults") { request, _ -> Response in
        let body = try await request.body.collect(upTo: 64 << 10)
        let fault = try JSONDecoder().decode(StandInFault.self, from: Data(body.readableBytesView))
        await state.inject(fault)
        return Response(status: .noContent)
    }
    control.post("webhooks/hold") { _, _ -> Response in
        await state.holdWebhooks()
        return Response(status: .noContent)
    }
    control.post("webhooks/release") { _, _ -> Response in
        await state.releaseWebhooks()
        return Response(status: .noContent)
    }
    control.post("refunds/{id}/fail") { request, context -> Response in
        let id = try context.parameters.require("id")
        let form = try await formFields(request)
        return answer(await state.failRefund(id, failureReason: form["failure_reason"] ?? "expired_or_canceled_card"))
    }
    control.delete("faults") { _, _ -> Response in
        await state.clearFaults()
        return Response(status: .noContent)
    }
    return Application(
        router: router, configuration: .init(address: .hostname(host, port: port), serverName: "stripe-stand-in"), logger: logger)
}

/// Refuses (403) a request a browser sent from another site: `Sec-Fetch-Site` other than `same-origin` or `none`, or
/// an `Origin` that is not this server's own host. A form on any web page could otherwise inject faults or hold
/// webhooks on a developer's stand-in; tools (curl, the tests, `billingd`) send neither header.
struct NotFromOtherSites<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let site = request.headers[.init("Sec-Fetch-Site")!]
        let origin = request.headers[.origin]
        let host = request.head.authority ?? ""
        let sameOrigin = origin.map { $0.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) == host } ?? true
        guard site == nil || site == "same-origin" || site == "none", sameOrigin else {
            return html(.forbidden, page("Forbidden", "The stand-in's control endpoints take requests from tools, not from other sites' pages."))
        }
        return try await next(request, context)
    }
}

/// A stand-in answer as Stripe would send it over HTTP.
func answer(_ response: StandInResponse) -> Response {
    var headers = HTTPFields()
    for (name, value) in response.headers { headers[.init(name)!] = value }
    return Response(status: .init(code: response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: response.body)))
}

/// A form post's fields (the last value of a repeated name).
func formFields(_ request: Request) async throws -> [String: String] {
    Dictionary(FormParameters.decodePairs(String(buffer: try await request.body.collect(upTo: 64 << 10))), uniquingKeysWith: { $1 })
}

func html(_ status: HTTPResponse.Status, _ body: String) -> Response {
    Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: body)))
}

func page(_ title: String, _ text: String) -> String {
    Pages.render("message", title: title, ["text": text])
}

/// As Stripe's pages write it: `7.00 USD`, `500 JPY`, in the currency's minor units.
func money(_ amount: Int, _ currency: String) -> String {
    let digits = Money.minorUnitDigits(currency)
    return String(format: "%.\(digits)f %@", Double(amount) / pow(10, Double(digits)), currency.uppercased())
}

func checkoutPage(_ view: StandInState.CheckoutView, notice: String? = nil) -> String {
    var values: [String: Any] = ["id": view.id, "role": "alert", "status": view.status]
    if let notice { values["notice"] = notice }
    guard view.status == "open" else { return Pages.render("checkout-closed", title: "Checkout", values) }
    if view.mode == "setup" { return Pages.render("setup", title: "Save a card", values) }
    values["lines"] = view.lines
    values["total"] = money(view.amountTotal, view.currency)
    values["recurring"] = view.mode == "subscription" && view.trialDays == 0
    if view.mode == "subscription", view.trialDays > 0 {
        values["trial"] = "Free for \(view.trialDays) days, then \(money(view.recurringTotal, view.currency)) per period."
    }
    return Pages.render("checkout", title: "Checkout", values)
}

func invoicePage(_ view: StandInState.InvoiceView, notice: String? = nil) -> String {
    var values: [String: Any] = ["id": view.id, "role": "status", "number": view.number, "status": view.status,
                                 "due": money(view.amountRemaining, view.currency), "open": view.status == "open"]
    if let notice { values["notice"] = notice }
    return Pages.render("invoice", title: "Invoice \(view.number)", values)
}

func challengePage(_ id: String) -> String {
    Pages.render("challenge", title: "Authenticate", ["id": id])
}

func portalPage(_ view: StandInState.PortalView, notice: String? = nil) -> String {
    var values: [String: Any] = ["id": view.id, "role": "status"]
    if let notice { values["notice"] = notice }
    if let returnURL = view.returnURL { values["returnURL"] = returnURL }
    values["subscriptions"] = view.subscriptions.map { line -> [String: Any] in
        [
            "subscriptionID": line.subscriptionID, "productName": line.productName, "status": line.status,
            "quantity": line.quantity, "cancelAtPeriodEnd": line.cancelAtPeriodEnd,
            "prices": view.prices.map { price -> [String: Any] in
                ["priceID": price.id, "productName": price.productName, "interval": price.interval ?? "", "selected": price.id == line.priceID]
            },
        ]
    }
    return Pages.render("portal", title: "Billing portal", values)
}
