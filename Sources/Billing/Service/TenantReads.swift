import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

extension BillingService {
    /// Reads of a tenant's data: its own users see a live tenant only; operators a deleted one too, until it is purged.
    func requireReadable(_ transaction: TenantTransaction, _ call: TenantCall) async throws {
        guard try await transaction.tenantRow.isLive(includingDeleted: call.principal.role == .operator) else {
            throw Self.unknownTenant(call.tenantID)
        }
    }

    static func unknownTenant(_ tenant: UUID) -> BillingError {
        .notFound("tenant \(tenant.uuidString.lowercased()) does not exist or was deleted; provision it with tenants.provision")
    }
}
