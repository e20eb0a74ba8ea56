import Billing
import BillingCore
import BillingStore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// `GET /invoices/{id}`: one of this server's invoices, printable (`web/invoice.mustache`), for its tenant's owners and
/// admins (bearer token; an operator names the tenant with `?tenant=`).
struct InvoicePage: Sendable {
    let template: MustacheTemplate

    init(directory: URL) throws {
        template = try MustacheTemplate(string: try readWebFile("invoice.mustache", in: directory))
    }

    func respond(_ request: Request, context: some RequestContext, api: BillingAPI, tokens: TokenAuthority) async throws -> Response {
        guard case .authenticated(let principal) = await tokens.authenticate(header: request.headers[.authorization]) else {
            return answer(.unauthorized, ["title": "Sign in", "message": "Send the invoice page a bearer token (Authorization: Bearer <JWT>)."])
        }
        guard [.owner, .admin, .operator].contains(principal.role) else {
            return answer(.forbidden, ["title": "Not allowed", "message": "Invoices are for the tenant's owners and admins."])
        }
        let tenant = principal.role == .operator
            ? request.uri.queryParameters.get("tenant").flatMap { UUID(uuidString: String($0)) } : principal.tenantID
        guard let tenant, let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)),
              let invoice = try await api.invoiceDocument(id, tenant: tenant)
        else {
            return answer(.notFound, ["title": "Not found", "message": "This tenant has no such invoice."])
        }
        return answer(.ok, ["title": "Invoice \(invoice.number)", "invoice": Self.view(of: invoice, tenant: tenant)])
    }

    func answer(_ status: HTTPResponse.Status, _ view: [String: Any]) -> Response {
        Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: template.render(view))))
    }

    static func view(of invoice: InvoiceRecord, tenant: UUID) -> [String: Any] {
        func money(_ amount: Int) -> String { Money(amount: amount, currency: invoice.currency).formatted }
        let day = Date.ISO8601FormatStyle().year().month().day()
        var view: [String: Any] = [
            "number": invoice.number, "status": invoice.status, "tenant": tenant.uuidString.lowercased(),
            "periodStart": invoice.periodStart.formatted(day), "periodEnd": invoice.periodEnd.formatted(day),
            "issued": invoice.createdAt.formatted(day),
            "lines": invoice.lines.map { line -> [String: Any] in
                ["description": line.description, "quantity": line.quantity, "unitAmount": money(line.unitAmount), "amount": money(line.amount)]
            },
            "subtotal": money(invoice.subtotal), "creditsApplied": invoice.creditsApplied,
            "creditAmount": money(invoice.creditAmount), "amountDue": money(invoice.amountDue),
        ]
        if invoice.status == "action_required", let link = invoice.paymentLink { view["paymentLink"] = link }
        return view
    }
}
