import BillingCore
import BillingStore
import Foundation
import Logging
import StripeAPI

/// What every RPC service and job of this module stands on: the environment, and the helpers in `Service/` that they
/// share (atomic phases, rate limits, Stripe customers, paging, tenant reads).
protocol BillingService: Sendable {
    var environment: BillingEnvironment { get }
}

extension BillingService {
    var catalog: PlanCatalog { environment.catalog }
    var tenants: TenantStore { environment.tenants }
    var settings: BillingSettings { environment.settings }
    var stripe: StripeSettings { environment.stripe }
    var now: @Sendable () -> Date { environment.now }
    var newID: @Sendable () -> UUID { environment.newID }
    var notifier: Notifier { environment.notifier }
}

/// `billing.checkout`, `billing.topUp`, `billing.checkoutSession`, `billing.setupPaymentMethod`, `billing.portal`:
/// Stripe Checkout and the Customer Portal.
struct CheckoutService: BillingService {
    let environment: BillingEnvironment
}

/// `billing.status`, `billing.entitlements`, `billing.updateSeats`, `billing.changePlan`, `billing.cancel`,
/// `billing.resume`: the tenant's subscription.
struct SubscriptionService: BillingService {
    let environment: BillingEnvironment
}

/// `billing.credits`, `credits.consume`, `credits.grant`: the credit wallet.
struct CreditService: BillingService {
    let environment: BillingEnvironment
}

/// `billing.subscribeByInvoice`, `billing.addCharge`, `billing.invoices`, `billing.voidInvoice`,
/// `billing.retryInvoice`, and the hosted invoice page: the invoices this server issues.
public struct InvoiceService: BillingService {
    public let environment: BillingEnvironment
}

/// `tenants.provision`, `tenants.delete`, `tenants.list`, `tenants.get`, `billing.auditLog`.
struct TenantService: BillingService {
    let environment: BillingEnvironment
}

/// `billing.payments`, `billing.refund`.
struct PaymentService: BillingService {
    let environment: BillingEnvironment
}

/// Moves plan changes scheduled for a period's end (downgrades, interval changes) onto the subscription shortly
/// before it renews.
public struct PlanChangeJob: BillingService {
    public let environment: BillingEnvironment

    public init(environment: BillingEnvironment) {
        self.environment = environment
    }
}

/// Tells the product, once, when a past-due tenant's grace period has ended.
public struct GracePeriodJob: BillingService {
    public let environment: BillingEnvironment

    public init(environment: BillingEnvironment) {
        self.environment = environment
    }
}

/// Issues the invoices of invoice-billed plans as their periods begin, then collects what is due (dunning).
public struct InvoicingJob: BillingService {
    public let environment: BillingEnvironment

    public init(environment: BillingEnvironment) {
        self.environment = environment
    }
}
