import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

/// The RPC methods of the billing router, declared once each, and the services behind them.
public struct BillingAPI: Sendable {
    public let environment: BillingEnvironment
    /// The OpenRPC document that `rpc.discover` returns.
    public let openRPC: JSONValue
    let checkout: CheckoutService
    let subscriptions: SubscriptionService
    let credits: CreditService
    public let invoices: InvoiceService
    let tenants: TenantService
    let payments: PaymentService

    public init(environment: BillingEnvironment, openRPC: JSONValue) {
        self.environment = environment
        self.openRPC = openRPC
        checkout = CheckoutService(environment: environment)
        subscriptions = SubscriptionService(environment: environment)
        credits = CreditService(environment: environment)
        invoices = InvoiceService(environment: environment)
        tenants = TenantService(environment: environment)
        payments = PaymentService(environment: environment)
    }

    public func registry() -> MethodRegistry<Caller> {
        var methods = MethodRegistry<Caller>()
        methods.publicMethod("rpc.discover", .query) { (_: NoParams, _) in openRPC }
        methods.publicMethod("billing.plans", .query) { (_: NoParams, _) in PlanList(environment.catalog) }
        methods.tenantMethod("billing.status", .query, roles: .readers) { (_: NoParams, call) in
            try await subscriptions.status(of: call.tenantID)
        }
        methods.platformMethod("tenants.provision", .mutation, roles: .service) { (params: ProvisionParams, principal, _) in
            try await tenants.provision(params, by: principal)
        }
        methods.tenantMethod("billing.checkout", .mutation, roles: .managers) { (params: CheckoutParams, call) in
            try await checkout.checkout(params, call: call)
        }
        methods.tenantMethod("billing.topUp", .mutation, roles: .managers) { (params: TopUpParams, call) in
            try await checkout.topUp(params, call: call)
        }
        methods.tenantMethod("billing.checkoutSession", .query, roles: .readers) { (params: CheckoutSessionParams, call) in
            try await checkout.checkoutSession(params, call: call)
        }
        methods.tenantMethod("billing.portal", .mutation, roles: .managers) { (params: PortalParams, call) in
            try await checkout.portal(params, call: call)
        }
        methods.tenantMethod("billing.setupPaymentMethod", .mutation, roles: .managers) { (_: NoParams, call) in
            try await checkout.setupPaymentMethod(call: call)
        }
        methods.tenantMethod("billing.subscribeByInvoice", .mutation, roles: .managers) { (params: SubscribeByInvoiceParams, call) in
            try await invoices.subscribeByInvoice(params, call: call)
        }
        methods.tenantMethod("billing.addCharge", .mutation, roles: .operators) { (params: AddChargeParams, call) in
            try await invoices.addCharge(params, call: call)
        }
        methods.tenantMethod("billing.invoices", .query, roles: .readers) { (params: PageParams, call) in
            try await invoices.invoices(params, call: call)
        }
        methods.tenantMethod("billing.voidInvoice", .mutation, roles: .operators) { (params: InvoiceActionParams, call) in
            try await invoices.voidInvoice(params, call: call)
        }
        methods.tenantMethod("billing.retryInvoice", .mutation, roles: .operators) { (params: InvoiceActionParams, call) in
            try await invoices.retryInvoice(params, call: call)
        }
        methods.tenantMethod("billing.entitlements", .query, roles: .readers) { (_: NoParams, call) in
            try await subscriptions.entitlements(of: call.tenantID)
        }
        methods.tenantMethod("billing.auditLog", .query, roles: .managers) { (params: PageParams, call) in
            try await tenants.auditLog(params, call: call)
        }
        methods.tenantMethod("billing.payments", .query, roles: .managers) { (params: PageParams, call) in
            try await payments.payments(params, call: call)
        }
        methods.tenantMethod("billing.refund", .mutation, roles: .operators) { (params: RefundParams, call) in
            try await payments.refund(params, call: call)
        }
        methods.tenantMethod("billing.updateSeats", .mutation, roles: .managers) { (params: SeatsParams, call) in
            try await subscriptions.updateSeats(params, call: call)
        }
        methods.tenantMethod("billing.cancel", .mutation, roles: .managers) { (params: CancelParams, call) in
            try await subscriptions.cancel(params, call: call)
        }
        methods.tenantMethod("billing.changePlan", .mutation, roles: .managers) { (params: ChangePlanParams, call) in
            try await subscriptions.changePlan(params, call: call)
        }
        methods.tenantMethod("billing.resume", .mutation, roles: .managers) { (_: NoParams, call) in
            try await subscriptions.resume(call: call)
        }
        methods.tenantMethod("tenants.delete", .mutation, roles: .service) { (_: NoParams, call) in
            try await tenants.deleteTenant(call: call)
        }
        methods.platformMethod("tenants.list", .query, roles: .operators) { (params: TenantsListParams, _, _) in
            try await tenants.listTenants(params)
        }
        methods.platformMethod("tenants.get", .query, roles: .operators) { (params: TenantIDParams, _, _) in
            try await tenants.getTenant(params)
        }
        methods.tenantMethod("billing.credits", .query, roles: .readers) { (params: PageParams, call) in
            try await credits.credits(params, call: call)
        }
        methods.tenantMethod("credits.consume", .mutation, roles: .service) { (params: CreditMovementParams, call) in
            try await credits.consume(params, call: call)
        }
        methods.tenantMethod("credits.grant", .mutation, roles: .operators) { (params: CreditMovementParams, call) in
            try await credits.grant(params, call: call)
        }
        return methods
    }
}
