import BillingStore
import Logging
import PostgresNIO
import ServiceLifecycle

/// Runs the connection pool for as long as the service group runs.
struct PostgresClientService: Service {
    let client: PostgresClient

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await client.run()
        }
    }
}

/// Applies pending migrations at start (only when DATABASE_OWNER_URL is set), then waits for shutdown.
struct MigrationService: Service {
    let migrator: Migrator
    let ownerURL: DatabaseURL
    let appURL: DatabaseURL?

    func run() async throws {
        try await migrator.run(ownerURL: ownerURL, appURL: appURL)
        try? await gracefulShutdown()
    }
}
