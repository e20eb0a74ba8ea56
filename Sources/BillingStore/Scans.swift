import Foundation
import Logging
import PostgresNIO

/// The jobs' scans across tenants, run as the server's role through SECURITY DEFINER functions that return ids only
/// (each tenant's rows are then read in its own transaction, under row-level security). Each aggregate's scans are
/// with its store: `SubscriptionScans`, `InvoiceScans`.
extension BillingDatabase {
    func tenantIDs(_ query: PostgresQuery, operation: String) async throws(StoreError) -> [UUID] {
        do {
            var found: [UUID] = []
            let rows = try await client.query(query, logger: logger)
            for try await tenant in rows.decode(UUID.self) { found.append(tenant) }
            return found
        } catch {
            throw StoreError.wrap(error, operation: operation)
        }
    }

    func tenantSubscriptions(_ query: PostgresQuery, operation: String) async throws(StoreError) -> [(tenant: UUID, subscription: String)] {
        do {
            var found: [(UUID, String)] = []
            let rows = try await client.query(query, logger: logger)
            for try await (tenant, subscription) in rows.decode((UUID, String).self) { found.append((tenant, subscription)) }
            return found
        } catch {
            throw StoreError.wrap(error, operation: operation)
        }
    }
}
