import Foundation
import Logging
import PostgresNIO

extension DatabaseURL {
    /// Creates the database `name` on this server (connected as a superuser), unless it exists: for `billingd dev`'s
    /// local cluster and the tests' databases. Production databases are made by whoever runs PostgreSQL.
    public func createDatabase(_ name: String, logger: Logger) async throws {
        try await withConnection(logger: logger) { connection in
            let rows = try await connection.query("SELECT 1 FROM pg_database WHERE datname = \(name)", logger: logger)
            for try await _ in rows { return }
            try await connection.query(
                "CREATE DATABASE \(unescaped: "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"")", logger: logger)
        }
    }
}
