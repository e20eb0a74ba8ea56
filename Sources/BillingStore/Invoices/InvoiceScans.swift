import Foundation
import Logging
import PostgresNIO

/// Invoices across tenants: the tenants with invoices to issue or to collect.
public struct InvoiceScans: Sendable {
    public let database: BillingDatabase

    public init(database: BillingDatabase) {
        self.database = database
    }

    /// Tenants with an invoice to collect by `at`, or overdue since before `overdueBefore` (ids only).
    public func tenantsWithInvoicesToCollect(at: Date, overdueBefore: Date) async throws(StoreError) -> [UUID] {
        try await database.tenantIDs("SELECT * FROM billing.invoices_to_collect(\(at), \(overdueBefore))", operation: "invoices to collect")
    }

    /// Tenants billed by invoice whose current period has started by `at` (ids only).
    public func invoiceBilledTenants(at: Date) async throws(StoreError) -> [UUID] {
        try await database.tenantIDs("SELECT * FROM billing.invoice_billed_tenants(\(at))", operation: "invoice-billed tenants")
    }
}
