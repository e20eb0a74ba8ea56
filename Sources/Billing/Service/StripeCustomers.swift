import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

extension BillingService {
    func requireStripe() throws -> StripeClient {
        guard let client = stripe.client else {
            throw BillingError.preconditionFailed(
                "Stripe is not configured on this server: set STRIPE_SECRET_KEY, or run `billingd dev` for the local stand-in")
        }
        return client
    }

    /// The tenant's Stripe customer, created when it has none yet: read in a short transaction, created at Stripe with no
    /// lock held (keyed by the tenant, so two requests at once get one customer), and recorded in a second one. Its id
    /// is committed before anything else uses it, so a later failure cannot roll it back.
    func customerID(for tenantID: UUID, stripe client: StripeClient) async throws -> String {
        let tenant = try await tenants.database.transaction(tenantID, operation: "customer") { try await lockedTenant($0) }
        if let existing = tenant.stripeCustomerID { return existing }
        let id = tenant.id.lowercased
        // A clock of the tenant's own, starting now (a retry finds the same one by its key).
        let clock = stripe.testClocks
            ? try await client.createTestClock(
                frozenTime: Int(now().timeIntervalSince1970), name: "tenant \(id)", idempotencyKey: "clock:\(id)").id
            : nil
        let created = try await client.createCustomer(
            email: tenant.email, name: tenant.name, tenantID: id, testClock: clock, idempotencyKey: "customer:\(id)")
        return try await tenants.database.transaction(tenantID, operation: "customer") { transaction in
            // Another request may have recorded it first (the same key gave it the same customer).
            if let existing = try await lockedTenant(transaction).stripeCustomerID { return existing }
            try await transaction.tenantRow.setStripeCustomer(created.id)
            return created.id
        }
    }

    func lockedTenant(_ transaction: TenantTransaction) async throws -> TenantRecord {
        guard let tenant = try await transaction.tenantRow.lock() else {
            throw BillingError.notFound(
                "tenant \(transaction.tenant.uuidString.lowercased()) does not exist or was deleted; provision it with tenants.provision")
        }
        return tenant
    }

    /// After provisioning: the Stripe customer, if Stripe answers; if not, the tenant works and it is made on first need.
    func createCustomerAfterProvisioning(_ tenantID: UUID) async -> String? {
        guard let client = stripe.client else { return nil }
        return try? await customerID(for: tenantID, stripe: client)
    }

    func parseInterval(_ text: String?) throws -> BillingInterval {
        guard let text else { return .month }
        guard let interval = BillingInterval(rawValue: text) else {
            throw BillingError.invalidParams(field: "interval", "interval must be month or year (got '\(text)')")
        }
        return interval
    }
}
