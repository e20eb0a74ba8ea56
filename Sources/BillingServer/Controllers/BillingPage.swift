import Billing
import BillingCore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// `GET /billing`: the billing page. The server renders what it knows without a tenant (the plan catalog and the
/// price of credits) from `web/billing.mustache`; the page's script (`/billing/app.js`) asks `/rpc` for the tenant's
/// billing with the bearer token the product hands over in the URL fragment, which never reaches the server in a URL.
public struct BillingPage: Sendable {
    let html: ByteBuffer
    let script: ByteBuffer
    let styles: ByteBuffer

    /// Script and styles come from this server only; the page talks to no other origin and cannot be framed.
    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            + "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        .init("Referrer-Policy")!: "no-referrer",
        .init("X-Content-Type-Options")!: "nosniff",
    ]

    /// The page as served.
    public var document: String { String(buffer: html) }

    /// Reads `billing.mustache`, `billing.js` and `billing.css` from `directory` and renders the page for `catalog`.
    public init(directory: URL, catalog: PlanCatalog) async throws {
        let template = try MustacheTemplate(string: try readWebFile("billing.mustache", in: directory))
        html = ByteBuffer(string: template.render(try Self.view(of: catalog)))
        script = ByteBuffer(string: try readWebFile("billing.js", in: directory))
        styles = ByteBuffer(string: try readWebFile("billing.css", in: directory))
    }

    /// What the template shows: every plan with its prices and seats, the credit price, and for the script the catalog
    /// and its currencies' decimals as JSON.
    static func view(of catalog: PlanCatalog) throws -> [String: Any] {
        let plans: [[String: Any]] = catalog.plans.map { plan in
            let prices = plan.prices.map { price in
                price.amount == 0 ? "free" : "\(Money(amount: price.amount, currency: price.currency).formatted) per \(plan.seats.max > 1 ? "seat per " : "")\(price.interval.rawValue)"
            }
            var entry: [String: Any] = [
                "key": plan.key, "name": plan.name, "invoiced": plan.billing == .invoice,
                "priceSummary": plan.isFree ? "no charge" : prices.joined(separator: " or "),
                "seatSummary": plan.seats.min == plan.seats.max
                    ? "\(plan.seats.min) seat\(plan.seats.min == 1 ? "" : "s")" : "\(plan.seats.min) to \(plan.seats.max) seats",
            ]
            if plan.trialDays > 0 { entry["trialNote"] = "\(plan.trialDays)-day free trial on a first subscription" }
            return entry
        }
        let credits = catalog.credits
        let json = try scriptJSON(PlanList(catalog))
        // The decimals of each of the catalog's currencies (the page writes amounts as Money does).
        let currencies = Set(catalog.plans.flatMap { $0.prices.map(\.currency) } + [credits.currency])
        let digits = try scriptJSON(Dictionary(uniqueKeysWithValues: currencies.map { ($0.lowercased(), Money.minorUnitDigits($0)) }))
        return [
            "plans": plans,
            "credits": [
                "minimum": credits.minimum, "maximum": credits.maximum,
                "suggested": min(max(500, credits.minimum), credits.maximum),
                "unitPrice": Money(amount: credits.unitAmount, currency: credits.currency).formatted,
            ] as [String: Any],
            "catalogJSON": json,
            "currencyDigitsJSON": digits,
        ]
    }

    /// JSON to embed in a script element: `<`, `>` and `&` escaped, so nothing in it can close the element.
    static func scriptJSON(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
            .replacingOccurrences(of: "<", with: "\\u003c").replacingOccurrences(of: ">", with: "\\u003e")
            .replacingOccurrences(of: "&", with: "\\u0026")
    }

    func addRoutes(to router: Router<some RequestContext>) {
        let page = self
        router.get("/billing") { _, _ in
            page.response(page.html, type: "text/html; charset=utf-8", cache: "no-store")
        }
        router.get("/billing/app.js") { _, _ in
            page.response(page.script, type: "text/javascript; charset=utf-8", cache: "no-cache")
        }
        router.get("/billing/app.css") { _, _ in
            page.response(page.styles, type: "text/css; charset=utf-8", cache: "no-cache")
        }
    }

    func response(_ body: ByteBuffer, type: String, cache: String) -> Response {
        var headers = Self.securityHeaders
        headers[.contentType] = type
        headers[.cacheControl] = cache
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }
}

/// One of the files of `web/` (the billing page's and the invoice view's), read at start.
func readWebFile(_ name: String, in directory: URL) throws -> String {
    let file = directory.appendingPathComponent(name)
    guard let data = FileManager.default.contents(atPath: file.path) else {
        throw ConfigurationError.invalid("BILLING_RESOURCES_DIR", "cannot read \(file.path) (the server's pages live in web/)")
    }
    return String(decoding: data, as: UTF8.self)
}
