import BillingDevSupport
import BillingStore
import Foundation
import Testing

/// `db/schema.sql` is what the migrations make. `make schema` writes it (this test, with BILLING_WRITE_SCHEMA=1).
@Suite struct SchemaSnapshotTests {
    @Test func theCommittedSchemaIsWhatTheMigrationsMake() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        let dumped = try await SchemaSnapshot.dump(database.ownerURL)
        let file = TestPaths.repositoryRoot.appendingPathComponent("db/schema.sql")
        if ProcessInfo.processInfo.environment["BILLING_WRITE_SCHEMA"] == "1" {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try dumped.write(to: file, atomically: true, encoding: .utf8)
        }
        let committed = try String(contentsOf: file, encoding: .utf8)
        #expect(committed == dumped, "db/schema.sql is not what the migrations make; run `make schema` and commit it")
        // What the file is for: every function's current text, and every table's policies.
        #expect(committed.contains("CREATE FUNCTION billing.claim_stripe_event("))
        #expect(committed.contains("CREATE POLICY"))
    }
}
