import BillingStore
import BillingDevSupport
import Foundation
import Logging
import PostgresNIO
import Testing

/// A remote database is reached over verified TLS unless its URL says otherwise.
@Suite struct DatabaseURLTests {
    @Test(arguments: [
        ("postgres://app:pw@db.internal.example:5432/billing", "verify-full"),
        ("postgres://app:pw@10.0.0.7/billing", "verify-full"),
        ("postgres://app:pw@127.0.0.1:5432/billing", "disable"),
        ("postgres://app:pw@localhost/billing", "disable"),
        ("postgres://app@localhost/billing?host=/run/postgresql/.s.PGSQL.5432", "disable"),
        ("postgres://app:pw@db.internal.example/billing?sslmode=require", "require"),
        ("postgres://app:pw@db.internal.example/billing?sslmode=disable", "disable"),
    ])
    func theDefaultModeIsVerifiedTLSForARemoteHost(url: String, mode: String) throws {
        #expect(try DatabaseURL(url).sslMode == mode)
    }

    @Test func anUnknownModeIsRefusedNamingTheModes() {
        #expect {
            try DatabaseURL("postgres://app:pw@db.internal.example/billing?sslmode=allow-everything")
        } throws: { error in
            "\(error)".contains("sslmode=allow-everything is not one of disable, prefer, require, verify-ca, verify-full")
        }
    }

    @Test func aRootCertificateSurvivesTheRoundTripThroughTheURL() throws {
        let url = try DatabaseURL("postgres://app:pw@db.internal.example/billing?sslrootcert=/etc/ssl/db-ca.pem")
        #expect(url.sslRootCertificate == "/etc/ssl/db-ca.pem")
        #expect(try DatabaseURL(url.secretURLString) == url)
    }

    /// The test cluster speaks no TLS: a mode that needs TLS refuses it rather than falling back to plain text, and
    /// only `prefer` (asked for by name) falls back.
    @Test func aModeThatNeedsTLSNeverFallsBackToPlainText() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        let logger = Logger(label: "test.tls")
        for mode in ["require", "verify-ca", "verify-full"] {
            var url = database.appURL
            url.sslMode = mode
            await #expect(throws: (any Error).self, "sslmode=\(mode) reached a server without TLS") {
                try await url.withConnection(logger: logger) { try await $0.query("SELECT 1", logger: logger) }
            }
        }
        var url = database.appURL
        url.sslMode = "prefer"
        let answer = try await url.withConnection(logger: logger) { connection in
            try await connection.query("SELECT 1", logger: logger).decode(Int.self).first { _ in true }
        }
        #expect(answer == 1)
    }
}
