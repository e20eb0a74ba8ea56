import BillingCore
@testable import BillingStore
import Testing

/// The status lists the queries use, written from BillingCore's enums.
@Suite struct StatusSQLTests {
    @Test func theSQLListIsTheTerminalStatuses() {
        #expect(SubscriptionStatus.terminalSQL == "('canceled', 'incomplete_expired')")
    }

    @Test func invoiceQueriesSpellTheStatusesTheSwiftPredicatesName() {
        #expect(InvoiceStatus.collectibleSQL == "('action_required', 'open')")
        #expect(InvoiceStatus.overdueSQL == "('overdue')")
        #expect(InvoiceStatus.openSQL == "('open')")
    }
}
