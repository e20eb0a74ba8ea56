import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

/// Settings of the application services that are not wiring.
public struct BillingSettings: Sendable {
    /// How long a past-due subscription stays entitled.
    public var pastDueGrace: Duration
    /// Stripe's `proration_behavior` for seat changes and upgrades.
    public var seatProration: String
    /// How long a deleted tenant's data stays (readable to operators) before `billingd tenants purge` removes it.
    public var tenantRetention: Duration
    /// Events to the SaaS product (the outbox).
    public var notifier: Notifier
    /// Dunning: days after the first failed attempt at which an invoice is tried again; after the last, it is overdue.
    public var dunning: DunningSchedule
    /// How long an overdue invoice waits before it is written off.
    public var writeOffAfter: Duration
    /// Signs the links to this server's invoices that `billing.invoices` gives owners and admins; without it, the
    /// links need the bearer token.
    public var invoiceLinks: InvoiceLinks?
    /// Per tenant, for the methods that call Stripe on every request (besides Checkout's own limit).
    public var rateLimits: RateLimits

    public init(
        pastDueGrace: Duration = .seconds(3 * 24 * 3600), seatProration: String = "create_prorations",
        tenantRetention: Duration = .seconds(30 * 86400), notifier: Notifier = .disabled,
        dunningDays: [Int] = [1, 3, 5, 7], writeOffAfter: Duration = .seconds(30 * 86400), invoiceLinks: InvoiceLinks? = nil,
        rateLimits: RateLimits = RateLimits()
    ) {
        self.rateLimits = rateLimits
        self.invoiceLinks = invoiceLinks
        self.notifier = notifier
        self.dunning = DunningSchedule(days: dunningDays)
        self.writeOffAfter = writeOffAfter
        self.pastDueGrace = pastDueGrace
        self.seatProration = seatProration
        self.tenantRetention = tenantRetention
    }
}

/// The RPC methods of the billing router, declared once each, and the services behind them.
public struct BillingAPI: Sendable {
    public let environment: BillingEnvironment
    /// The OpenRPC document that `rpc.discover` returns.
    public let openRPC: JSONValue

    public init(environment: BillingEnvironment, openRPC: JSONValue) {
        self.environment = environment
        self.openRPC = openRPC
    }

    public var catalog: PlanCatalog { environment.catalog }
    public var tenants: TenantStore { environment.tenants }
    public var settings: BillingSettings { environment.settings }
    public var stripe: StripeSettings { environment.stripe }
    public var now: @Sendable () -> Date { environment.now }
    public var newID: @Sendable () -> UUID { environment.newID }
    var notifier: Notifier { environment.notifier }

    public func registry() -> MethodRegistry<Caller> {
        var methods = MethodRegistry<Caller>()
        methods.publicMethod("rpc.discover", .query) { (_: NoParams, _) in openRPC }
        methods.publicMethod("billing.plans", .query) { (_: NoParams, _) in PlanList(catalog) }
        methods.tenantMethod("billing.status", .query, roles: .readers) { (_: NoParams, call) in
            try await status(of: call.tenantID)
        }
        methods.platformMethod("tenants.provision", .mutation, roles: .service) { (params: ProvisionParams, principal, _) in
            try await provision(params, by: principal)
        }
        methods.tenantMethod("billing.checkout", .mutation, roles: .managers) { (params: CheckoutParams, call) in
            try await checkout(params, call: call)
        }
        methods.tenantMethod("billing.topUp", .mutation, roles: .managers) { (params: TopUpParams, call) in
            try await topUp(params, call: call)
        }
        methods.tenantMethod("billing.checkoutSession", .query, roles: .readers) { (params: CheckoutSessionParams, call) in
            try await checkoutSession(params, call: call)
        }
        methods.tenantMethod("billing.portal", .mutation, roles: .managers) { (params: PortalParams, call) in
            try await portal(params, call: call)
        }
        methods.tenantMethod("billing.setupPaymentMethod", .mutation, roles: .managers) { (_: NoParams, call) in
            try await setupPaymentMethod(call: call)
        }
        methods.tenantMethod("billing.subscribeByInvoice", .mutation, roles: .managers) { (params: SubscribeByInvoiceParams, call) in
            try await subscribeByInvoice(params, call: call)
        }
        methods.tenantMethod("billing.addCharge", .mutation, roles: .operators) { (params: AddChargeParams, call) in
            try await addCharge(params, call: call)
        }
        methods.tenantMethod("billing.invoices", .query, roles: .readers) { (params: PageParams, call) in
            try await invoices(params, call: call)
        }
        methods.tenantMethod("billing.voidInvoice", .mutation, roles: .operators) { (params: InvoiceActionParams, call) in
            try await voidInvoice(params, call: call)
        }
        methods.tenantMethod("billing.retryInvoice", .mutation, roles: .operators) { (params: InvoiceActionParams, call) in
            try await retryInvoice(params, call: call)
        }
        methods.tenantMethod("billing.entitlements", .query, roles: .readers) { (_: NoParams, call) in
            try await entitlements(of: call.tenantID)
        }
        methods.tenantMethod("billing.auditLog", .query, roles: .managers) { (params: PageParams, call) in
            try await auditLog(params, call: call)
        }
        methods.tenantMethod("billing.payments", .query, roles: .managers) { (params: PageParams, call) in
            try await payments(params, call: call)
        }
        methods.tenantMethod("billing.refund", .mutation, roles: .operators) { (params: RefundParams, call) in
            try await refund(params, call: call)
        }
        methods.tenantMethod("billing.updateSeats", .mutation, roles: .managers) { (params: SeatsParams, call) in
            try await updateSeats(params, call: call)
        }
        methods.tenantMethod("billing.cancel", .mutation, roles: .managers) { (params: CancelParams, call) in
            try await cancel(params, call: call)
        }
        methods.tenantMethod("billing.changePlan", .mutation, roles: .managers) { (params: ChangePlanParams, call) in
            try await changePlan(params, call: call)
        }
        methods.tenantMethod("billing.resume", .mutation, roles: .managers) { (_: NoParams, call) in
            try await resume(call: call)
        }
        methods.tenantMethod("tenants.delete", .mutation, roles: .service) { (_: NoParams, call) in
            try await deleteTenant(call: call)
        }
        methods.platformMethod("tenants.list", .query, roles: .operators) { (params: TenantsListParams, _, _) in
            try await listTenants(params)
        }
        methods.platformMethod("tenants.get", .query, roles: .operators) { (params: TenantIDParams, _, _) in
            try await getTenant(params)
        }
        methods.tenantMethod("billing.credits", .query, roles: .readers) { (params: PageParams, call) in
            try await credits(params, call: call)
        }
        methods.tenantMethod("credits.consume", .mutation, roles: .service) { (params: CreditMovementParams, call) in
            try await consume(params, call: call)
        }
        methods.tenantMethod("credits.grant", .mutation, roles: .operators) { (params: CreditMovementParams, call) in
            try await grant(params, call: call)
        }
        return methods
    }

    func status(of tenant: UUID) async throws -> BillingStatus {
        guard let row = try await tenants.status(of: tenant) else {
            throw BillingError.notFound("tenant \(tenant.uuidString.lowercased()) does not exist or was deleted; provision it with tenants.provision")
        }
        return BillingStatus(tenant: tenant, row: row, catalog: catalog, now: now(), grace: settings.pastDueGrace)
    }

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
}
