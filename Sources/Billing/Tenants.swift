import BillingCore
import BillingStore
import Foundation
import StripeAPI

public struct TenantsListParams: Decodable, Sendable {
    public var query: String?
    public var limit: Int?
    public var cursor: String?
}

public struct TenantIDParams: Decodable, Sendable {
    public var tenantId: String
}

public struct TenantView: Encodable, Sendable {
    public var tenantId: String
    public var name: String
    public var email: String
    @OrNull public var stripeCustomerId: String?
    public var createdAt: Date
    @OrNull public var deletedAt: Date?
    /// When `billingd tenants purge` may remove a deleted tenant's data.
    @OrNull public var purgeAfter: Date?

    init(_ listing: TenantListing, retention: Duration) {
        tenantId = listing.id.lowercased
        name = listing.name
        email = listing.email
        stripeCustomerId = listing.stripeCustomerID
        createdAt = listing.createdAt
        deletedAt = listing.deletedAt
        purgeAfter = listing.deletedAt?.addingTimeInterval(Double(retention.components.seconds))
    }
}

public struct TenantsPage: Encodable, Sendable {
    public var tenants: [TenantView]
    @OrNull public var nextCursor: String?
}

extension BillingAPI {
    /// `tenants.delete` (service): the Stripe subscription is canceled first, then the tenant is marked deleted. Its
    /// data stays readable to operators for the retention period; its users' tokens get NOT_FOUND from now on.
    func deleteTenant(call: TenantCall) async throws -> TenantView {
        let actor = call.actor
        let retention = settings.tenantRetention
        return try await tenants.database.transaction(call.tenantID, operation: "delete tenant") { transaction in
            guard var tenant = try await transaction.lockTenantIncludingDeleted() else { throw Self.unknownTenant(call.tenantID) }
            // Deleting twice is harmless: the first deletion stands.
            if tenant.deletedAt != nil { return TenantView(tenant, retention: retention) }
            // Nothing may bill it afterwards: every live subscription is canceled and every open Checkout expired.
            let all = try await transaction.allLiveSubscriptions()
            // Ours end here; Stripe's are canceled at Stripe.
            for subscription in all where subscription.isInvoiceBilled {
                try await applyLocally(subscription, transaction, actor: actor, action: "subscription.canceled") { $0.status = "canceled" }
            }
            let live = all.filter { !$0.isInvoiceBilled }
            let open = try await transaction.openSessions(now: now())
            if !live.isEmpty || !open.isEmpty {
                guard let client = stripe.client else {
                    throw BillingError.preconditionFailed(
                        "the tenant has live Stripe subscriptions or open checkouts and Stripe is not configured here, so they cannot be ended first; set STRIPE_SECRET_KEY")
                }
                for subscription in live {
                    let ended = try await client.endSubscription(subscription.stripeSubscriptionID)
                    try await applyConfirmed(ended, over: subscription, transaction, actor: actor, action: "subscription.canceled")
                }
                for session in open {
                    try await expireReplaced(
                        session, client: client, transaction: transaction, next: "delete the tenant again (its new subscription is canceled then)")
                }
            }
            let time = now()
            try await transaction.markDeleted(at: time)
            try await transaction.audit(actor: actor, action: "tenant.deleted", before: ["name": tenant.name, "email": tenant.email],
                                        after: ["deletedAt": time.formatted(.iso8601)])
            tenant.deletedAt = time
            return TenantView(tenant, retention: retention)
        }
    }

    /// `tenants.list` (operator): by name, email, id or Stripe customer id; deleted tenants included.
    func listTenants(_ params: TenantsListParams) async throws -> TenantsPage {
        let limit = try PageParams(limit: params.limit, cursor: nil).validatedLimit()
        let after = try params.cursor.map { cursor in
            guard let id = UUID(uuidString: cursor) else {
                throw BillingError.invalidParams(field: "cursor", "cursor must be a nextCursor from an earlier tenants.list answer")
            }
            return id
        }
        let query = params.query?.trimmingCharacters(in: .whitespacesAndNewlines)
        let page = Self.page(
            try await tenants.search(query?.isEmpty == false ? query : nil, after: after, limit: limit + 1), limit: limit
        ) { $0.id.lowercased }
        return TenantsPage(tenants: page.rows.map { TenantView($0, retention: settings.tenantRetention) }, nextCursor: page.next)
    }

    /// `tenants.get` (operator): one tenant, deleted or not.
    func getTenant(_ params: TenantIDParams) async throws -> TenantView {
        guard let id = UUID(uuidString: params.tenantId) else {
            throw BillingError.invalidParams(field: "tenantId", "'tenantId' must be a UUID string")
        }
        // The search also matches names and emails that contain the id; the tenant with that id is the one.
        guard let found = try await tenants.search(id.lowercased, after: nil, limit: 200).first(where: { $0.id == id }) else {
            throw BillingError.notFound("there is no tenant \(id.lowercased) (it may have been purged)")
        }
        return TenantView(found, retention: settings.tenantRetention)
    }
}
