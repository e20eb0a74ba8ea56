import Billing
import BillingCore
import BillingStore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// `GET /invoices/{id}`: one of this server's invoices, printable (`web/invoice.mustache`), for its tenant's owners and
/// admins: with a bearer token (an operator names the tenant with `?tenant=`), or through the signed link
/// `billing.invoices` gives them (`?tenant=&expires=&signature=`).
struct InvoicePage: Sendable {
    let template: MustacheTemplate

    init(directory: URL) throws {
        template = try MustacheTemplate(string: try readWebFile("invoice.mustache", in: directory))
    }

    func addRoutes(to router: Router<some RequestContext>, api: BillingAPI, tokens: TokenAuthority) {
        let page = self
        router.get("/invoices/{id}") { request, context in
            try await page.respond(request, context: context, api: api, tokens: tokens)
        }
    }

    func respond(_ request: Request, context: some RequestContext, api: BillingAPI, tokens: TokenAuthority) async throws -> Response {
        let query = request.uri.queryParameters
        if let signature = query.get("signature") {
            return try await respondToLink(
                signature: String(signature), tenant: query.get("tenant").flatMap { UUID(uuidString: String($0)) },
                expires: query.get("expires").flatMap { Int(String($0)) }, context: context, api: api)
        }
        guard case .authenticated(let principal) = await tokens.authenticate(header: request.headers[.authorization]) else {
            return answer(.unauthorized, ["title": "Sign in", "message": "Send the invoice page a bearer token (Authorization: Bearer <JWT>)."])
        }
        guard [.owner, .admin, .operator].contains(principal.role) else {
            return answer(.forbidden, ["title": "Not allowed", "message": "Invoices are for the tenant's owners and admins."])
        }
        let tenant = principal.role == .operator
            ? query.get("tenant").flatMap { UUID(uuidString: String($0)) } : principal.tenantID
        return try await show(
            context.parameters.get("id").flatMap(UUID.init(uuidString:)), tenant: tenant, includingDeleted: principal.role == .operator, api: api)
    }

    /// A signed link from `billing.invoices`: that invoice of that tenant, until the link expires.
    func respondToLink(
        signature: String, tenant: UUID?, expires: Int?, context: some RequestContext, api: BillingAPI
    ) async throws -> Response {
        guard let links = api.environment.settings.invoiceLinks, let tenant, let expires,
              let id = context.parameters.get("id").flatMap(UUID.init(uuidString:))
        else {
            return answer(.forbidden, ["title": "Link not valid", "message": "This invoice link is incomplete; open the invoice from the billing page again."])
        }
        switch links.verify(tenant: tenant, invoice: id, expires: expires, signature: signature, now: api.environment.now()) {
        case .valid:
            return try await show(id, tenant: tenant, includingDeleted: false, api: api)
        case .expired:
            return answer(.forbidden, ["title": "Link expired", "message": "This invoice link has expired; open the invoice from the billing page again for a new one."])
        case .invalid:
            return answer(.forbidden, ["title": "Link not valid", "message": "This invoice link is not valid; open the invoice from the billing page again."])
        }
    }

    func show(_ id: UUID?, tenant: UUID?, includingDeleted: Bool, api: BillingAPI) async throws -> Response {
        guard let tenant, let id, let invoice = try await api.invoices.invoiceDocument(id, tenant: tenant, includingDeleted: includingDeleted) else {
            return answer(.notFound, ["title": "Not found", "message": "This tenant has no such invoice."])
        }
        return answer(.ok, ["title": "Invoice \(invoice.number)", "invoice": Self.view(of: invoice, tenant: tenant)])
    }

    /// Private to whoever holds the link or token: never cached, never sent on as a referrer, never framed, and no
    /// script runs in it.
    func answer(_ status: HTTPResponse.Status, _ view: [String: Any]) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "private, no-store",
                .contentSecurityPolicy: "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
                .init("Referrer-Policy")!: "no-referrer", .init("X-Robots-Tag")!: "noindex",
            ],
            body: .init(byteBuffer: ByteBuffer(string: template.render(view))))
    }

    static func view(of invoice: InvoiceRecord, tenant: UUID) -> [String: Any] {
        func money(_ amount: Int) -> String { Money(amount: amount, currency: invoice.currency).formatted }
        let day = Date.ISO8601FormatStyle().year().month().day()
        var view: [String: Any] = [
            "number": invoice.number, "status": invoice.status.rawValue, "tenant": tenant.uuidString.lowercased(),
            "periodStart": invoice.periodStart.formatted(day), "periodEnd": invoice.periodEnd.formatted(day),
            "issued": invoice.createdAt.formatted(day),
            "lines": invoice.lines.map { line -> [String: Any] in
                ["description": line.description, "quantity": line.quantity, "unitAmount": money(line.unitAmount), "amount": money(line.amount)]
            },
            "subtotal": money(invoice.subtotal), "creditsApplied": invoice.creditsApplied,
            "creditAmount": money(invoice.creditAmount), "amountDue": money(invoice.amountDue),
        ]
        if invoice.status == .actionRequired, let link = invoice.paymentLink { view["paymentLink"] = link }
        return view
    }
}
