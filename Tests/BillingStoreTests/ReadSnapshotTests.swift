import BillingStore
import BillingDevSupport
import Foundation
import Logging
import PostgresNIO
import Testing

/// Reads made of several statements (a balance and a page of its ledger) see one snapshot and write nothing.
@Suite struct ReadSnapshotTests {
    @Test func aReadOnlyTransactionSeesOneSnapshotAndRefusesWrites() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        let tenant = UUID()
        try await database.withAppClient(maxConnections: 4) { db in
            _ = try await TenantStore(database: db).provision(
                id: tenant, name: "Snapshot", email: "s@example.com", actor: AuditActor(kind: .system, id: "test"))
            let grant: @Sendable (String) async throws -> Void = { key in
                try await db.transaction(tenant, operation: "grant") { transaction in
                    _ = try await transaction.credits.append(
                        source: "grant:\(key)", kind: "grant", amount: 10, frozenDelta: 0, reason: key, stripeEvent: nil)
                }
            }
            try await grant("first")

            let (balance, ledger) = try await db.transaction(tenant, operation: "read credits", readOnly: true) { transaction in
                let balance = try await transaction.credits.balance().available
                // Another transaction commits a movement between the two statements of this read.
                try await grant("second")
                return (balance, try await transaction.credits.ledger(before: nil, limit: 10).count)
            }
            #expect(balance == 10)
            #expect(ledger == 1, "the ledger page saw a movement the balance did not")

            await #expect(throws: (any Error).self) {
                try await db.transaction(tenant, operation: "read credits", readOnly: true) { transaction in
                    _ = try await transaction.credits.append(
                        source: "grant:sneaky", kind: "grant", amount: 10, frozenDelta: 0, reason: "sneaky", stripeEvent: nil)
                }
            }
            let after = try await db.transaction(tenant, operation: "read credits", readOnly: true) { try await $0.credits.balance().available }
            #expect(after == 20)
        }
    }
}
