import Foundation
import Logging
import PostgresNIO

/// A store of one aggregate's rows (subscriptions, payments, invoices, ...), reached from a tenant transaction
/// (`transaction.subscriptions`): its SQL runs on that transaction's connection, fenced to its tenant.
protocol TenantScopedStore: Sendable {
    var transaction: TenantTransaction { get }
}

extension TenantScopedStore {
    var connection: PostgresConnection { transaction.connection }
    var tenant: UUID { transaction.tenant }
    var logger: Logger { transaction.logger }
}
