import Billing
import BillingStore
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import StripeAPI

/// What the job and event commands (`billingd worker`, `reconcile`, `events`) share: the server's own database
/// role, the catalog and Stripe, as `serve` configures them.
public struct Jobs: Sendable {
    public let configuration: BillingConfiguration
    public let logger: Logger

    public init(configuration: BillingConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// `body` with a running connection pool as the server's role; the pool stops when it returns.
    public func withInbox<T: Sendable>(_ body: @Sendable (EventInbox) async throws -> T) async throws -> T {
        let database = BillingDatabase(url: try configuration.requireDatabaseURL(), maxConnections: 4, logger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await database.client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(EventInbox(database: database))
        }
    }

    var stripe: StripeClient? {
        configuration.stripeConfiguration().map { StripeClient(configuration: $0, logger: logger) }
    }

    /// The inbox worker (and, with Stripe configured, periodic reconciliation) until SIGTERM or SIGINT.
    public func runWorker() async throws {
        let database = BillingDatabase(
            url: try configuration.requireDatabaseURL(), maxConnections: configuration.inboxWorkers + 2, logger: logger)
        let inbox = EventInbox(database: database)
        let services: [any Service] = [PostgresClientService(client: database.client)] + backgroundServices(
            configuration: configuration.withAtLeastOneWorker, inbox: inbox, catalog: try configuration.loadCatalog(), stripe: stripe,
            metrics: nil, logger: logger)
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// Processes every event due now and returns what happened.
    public func drainInbox() async throws -> [ProcessOutcome] {
        let catalog = try configuration.loadCatalog()
        let stripe = self.stripe
        let configuration = self.configuration
        let logger = self.logger
        return try await withInbox { inbox in
            try await makeInboxWorker(
                configuration: configuration, inbox: inbox, catalog: catalog, stripe: stripe, metrics: nil, logger: logger
            ).drain()
        }
    }

    /// One run of the invoicing job as of `at`.
    public func runInvoices(at: Date) async throws -> InvoiceRunReport {
        let configuration = self.configuration
        let catalog = try configuration.loadCatalog()
        let stripe = self.stripe
        let logger = self.logger
        return try await withInbox { inbox in
            let api = BillingAPI(
                catalog: catalog, tenants: TenantStore(database: inbox.database),
                settings: BillingSettings(
                    pastDueGrace: configuration.pastDueGrace, seatProration: configuration.prorationBehavior,
                    tenantRetention: configuration.tenantRetention, notifier: configuration.notifier,
                    dunningDays: configuration.dunningDays, writeOffAfter: configuration.writeOffAfter),
                stripe: StripeSettings(client: stripe, publicURL: configuration.publicURL), openRPC: .null)
            return try await api.runInvoices(at: at, logger: logger)
        }
    }

    /// One reconciliation pass.
    public func reconcile() async throws -> Reconciler.Report {
        guard let stripe else {
            throw ConfigurationError.missing("STRIPE_SECRET_KEY", "sk_test_... (reconciliation reads Stripe's events)")
        }
        let configuration = self.configuration
        let logger = self.logger
        return try await withInbox { inbox in
            try await makeReconciler(configuration: configuration, inbox: inbox, stripe: stripe, logger: logger).run()
        }
    }
}

extension BillingConfiguration {
    /// `billingd worker` runs a worker even where `serve` is configured to run none.
    var withAtLeastOneWorker: BillingConfiguration {
        var configuration = self
        configuration.inboxWorkers = max(1, inboxWorkers)
        return configuration
    }
}
