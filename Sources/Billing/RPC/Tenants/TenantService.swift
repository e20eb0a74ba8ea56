import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

public struct ProvisionParams: Decodable, Sendable {
    public var tenantID: String?
    public var name: String
    public var email: String

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenantId", name, email
    }
}

public struct ProvisionedTenant: Encodable, Sendable {
    public var tenantID: UUID
    public var name: String
    public var email: String
    public var stripeCustomerID: String?
    public var createdAt: Date
    /// False when this call repeated an earlier provisioning.
    public var created: Bool

    init(_ record: TenantRecord, created: Bool) {
        self.tenantID = record.id
        self.name = record.name
        self.email = record.email
        self.stripeCustomerID = record.stripeCustomerID
        self.createdAt = record.createdAt
        self.created = created
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenantId", name, email, stripeCustomerID = "stripeCustomerId", createdAt, created
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tenantID.uuidString.lowercased(), forKey: .tenantID)
        try container.encode(name, forKey: .name)
        try container.encode(email, forKey: .email)
        try container.encode(stripeCustomerID, forKey: .stripeCustomerID)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(created, forKey: .created)
    }
}

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

/// `tenants.list`'s answer.
public typealias TenantsPage = Page<TenantView>

extension TenantView: PageItem {
    public static let listKey = "tenants"
}

extension TenantService {
    func provision(_ params: ProvisionParams, by principal: Principal) async throws -> ProvisionedTenant {
        let name = params.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(name.count) else {
            throw BillingError.invalidParams(field: "name", "'name' must be 1 to 200 characters")
        }
        let email = params.email.trimmingCharacters(in: .whitespacesAndNewlines)
        guard EmailAddress.isValid(email) else {
            throw BillingError.invalidParams(field: "email", "'email' must be an email address like billing@example.com")
        }
        let id: UUID
        if let given = params.tenantID {
            guard let parsed = UUID(uuidString: given) else {
                throw BillingError.invalidParams(field: "tenantId", "'tenantId' must be a UUID string, or left out to get a new one")
            }
            id = parsed
        } else {
            id = newID()
        }
        let provisioned: ProvisionedTenant
        switch try await tenants.provision(id: id, name: name, email: email, actor: AuditActor(principal)) {
        case .created(var record):
            record.stripeCustomerID = await createCustomerAfterProvisioning(id)
            provisioned = ProvisionedTenant(record, created: true)
        case .existing(var record):
            if record.stripeCustomerID == nil { record.stripeCustomerID = await createCustomerAfterProvisioning(id) }
            provisioned = ProvisionedTenant(record, created: false)
        }
        // Stripe events naming this tenant (or its customer) that arrived before it existed are due now.
        await EventInbox(database: tenants.database).wakeUnresolved(linked: [id.lowercased] + [provisioned.stripeCustomerID].compactMap { $0 })
        return provisioned
    }

    /// What `tenants.delete` must end at Stripe first.
    struct DeletionPlan: Codable, Sendable {
        var subscriptions: [String]
        var sessions: [String]
    }

    /// `tenants.delete` (service), in atomic phases: the Stripe subscriptions are canceled and open Checkouts expired
    /// first, with no lock held, then the tenant is marked deleted. Its data stays readable to operators for the
    /// retention period; its users' tokens get NOT_FOUND from now on.
    func deleteTenant(call: TenantCall) async throws -> TenantView {
        let actor = call.actor
        let retention = settings.tenantRetention
        let client = stripe.client
        return try await inAtomicPhases(
            call.tenantID, .tenant, operation: "tenants.delete", includingDeleted: true, exclusiveLock: true,
            decide: { transaction -> PhaseOne<DeletionPlan, TenantView> in
                let plan = DeletionPlan(
                    subscriptions: try await transaction.subscriptions.allLive().filter { !$0.isInvoiceBilled }.map(\.stripeSubscriptionID),
                    sessions: try await transaction.checkout.openSessions(now: now()))
                if plan.subscriptions.isEmpty && plan.sessions.isEmpty {
                    return .answered(try await self.markDeleted(transaction, ended: [], expired: [], actor: actor, retention: retention))
                }
                guard client != nil else {
                    throw BillingError.preconditionFailed(
                        "the tenant has live Stripe subscriptions or open checkouts and Stripe is not configured here, so they cannot be ended first; set STRIPE_SECRET_KEY")
                }
                return .call(request: "delete", plan: plan)
            },
            call: { plan, _ in
                guard let client else { return [Subscription]() }
                var ended: [Subscription] = []
                for subscription in plan.subscriptions { ended.append(try await client.endSubscription(subscription)) }
                for session in plan.sessions {
                    try await expireReplaced(session, client: client, next: "delete the tenant again (its new subscription is canceled then)")
                }
                return ended
            },
            record: { transaction, plan, _, ended, _ in
                try await self.markDeleted(transaction, ended: ended, expired: plan.sessions, actor: actor, retention: retention)
            },
            settle: { intent in
                // Whatever it ended at Stripe is ended; a new attempt reads the tenant afresh.
                try await self.finish(intent, tenant: call.tenantID, as: "abandoned", because: "settled: a new deletion starts afresh")
            })
    }

    /// The last phase of a deletion: what Stripe ended is recorded, this server's own subscriptions are canceled, and the
    /// tenant is marked deleted; unless a subscription went live meanwhile, which must be ended first. Deleting twice is
    /// harmless: the first deletion stands.
    func markDeleted(
        _ transaction: TenantTransaction, ended: [Subscription], expired: [String], actor: AuditActor, retention: Duration
    ) async throws -> TenantView {
        guard var tenant = try await transaction.tenantRow.lockIncludingDeleted(exclusive: true) else { throw Self.unknownTenant(transaction.tenant) }
        if tenant.deletedAt != nil { return TenantView(tenant, retention: retention) }
        for subscription in ended {
            if let current = try await transaction.subscriptions.lock(subscription.id) {
                try await applyConfirmed(subscription, over: current, transaction, actor: actor, action: "subscription.canceled")
            }
        }
        for session in expired { try await transaction.checkout.markSessionExpired(session) }
        let all = try await transaction.subscriptions.allLive()
        if let started = all.first(where: { !$0.isInvoiceBilled }) {
            throw BillingError.conflict(
                "subscription \(started.stripeSubscriptionID) started while the tenant was being deleted; delete it again to cancel it too",
                data: ["subscriptionId": .string(started.stripeSubscriptionID)])
        }
        // Ours end here; nothing may bill the tenant afterwards.
        for subscription in all {
            try await applyLocally(subscription, transaction, actor: actor, action: "subscription.canceled") { $0.status = .canceled }
        }
        let time = now()
        try await transaction.tenantRow.markDeleted(at: time)
        try await transaction.audit.record(actor: actor, action: "tenant.deleted", before: ["name": tenant.name, "email": tenant.email],
                                    after: ["deletedAt": time.formatted(.iso8601)])
        tenant.deletedAt = time
        return TenantView(tenant, retention: retention)
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
        return TenantsPage(items: page.rows.map { TenantView($0, retention: settings.tenantRetention) }, nextCursor: page.next)
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
