import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

public struct PortalParams: Decodable, Sendable {
    public var returnUrl: String?
}

public struct PortalOpened: Encodable, Sendable, Equatable {
    public var url: String
}

extension CheckoutService {
    /// `billing.portal`: a Customer Portal session; the return URL must be on this server's own origin.
    func portal(_ params: PortalParams, call: TenantCall) async throws -> PortalOpened {
        let returnURL = params.returnUrl ?? "\(stripe.publicURL)/billing"
        guard let wanted = URLComponents(string: returnURL), let own = URLComponents(string: stripe.publicURL),
              wanted.scheme == own.scheme, wanted.host == own.host, wanted.port == own.port
        else {
            throw BillingError.invalidParams(
                field: "returnUrl", "returnUrl must be on \(stripe.publicURL) (no redirects to other sites)")
        }
        let client = try requireStripe()
        try await spendRateToken(settings.rateLimits.portal, tenant: call.tenantID, method: "billing.portal")
        let customer = try await customerID(for: call.tenantID, stripe: client)
        // A portal session is a short-lived link that moves no money: a fresh one per call is right.
        let session = try await client.createPortalSession(
            customer: customer, returnURL: returnURL, idempotencyKey: "portal:\(customer):\(newID().lowercased)")
        return PortalOpened(url: session.url)
    }
}
