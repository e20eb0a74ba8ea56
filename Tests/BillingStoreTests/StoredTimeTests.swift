import BillingStore
import BillingDevSupport
import Foundation
import PostgresNIO
import Testing

/// Times read back from PostgreSQL are compared with the times they were written from at the database's precision.
@Suite struct StoredTimeTests {
    @Test func aTimeReadBackIsNeverLaterThanTheOneItWasWrittenFrom() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        // Ten thousand instants of this year; about one in three hundred comes back a fraction of a microsecond late.
        let written = (0..<10_000).map { _ in Date(timeIntervalSinceNow: -Double.random(in: 0..<31_536_000)) }
        let read = try await database.withAppClient(maxConnections: 1) { db in
            var read: [Date] = []
            let rows = try await db.client.query("SELECT unnest(\(written)::timestamptz[])", logger: db.logger)
            for try await date in rows.decode(Date.self) { read.append(date) }
            return read
        }
        try #require(read.count == written.count)
        let pairs = zip(written, read)
        // The failure this guards against is real: compared raw, some stored times are after their originals.
        #expect(pairs.contains { original, stored in stored > original })
        // What invoicing relies on: a time read back is never after the one it was written from.
        #expect(pairs.allSatisfy { original, stored in stored.isAtOrBefore(original) })
    }
}

/// What jsonb cannot hold is replaced, and nothing else is touched.
@Suite struct StorablePayloadTests {
    @Test(arguments: [
        (#"{"a":"x\u0000y"}"#, #"{"a":"x\ufffdy"}"#),
        (#"{"a":"\\u0000"}"#, #"{"a":"\\u0000"}"#),
        (#"{"a":"\\\u0000"}"#, #"{"a":"\\\ufffd"}"#),
        (#"{"a":"\u00001"}"#, #"{"a":"\ufffd1"}"#),
        (#"{"a":"plain é"}"#, #"{"a":"plain é"}"#),
    ])
    func nulEscapesBecomeTheReplacementCharacter(payload: String, stored: String) {
        #expect(EventInbox.storable(payload) == stored)
    }
}
