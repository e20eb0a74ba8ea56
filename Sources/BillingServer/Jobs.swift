import Billing
import BillingStore
import Foundation
import Logging
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

    /// `body` with the environment over a running connection pool as the server's role; the pool stops when it
    /// returns.
    public func withEnvironment<T: Sendable>(_ body: @Sendable (BillingEnvironment) async throws -> T) async throws -> T {
        let database = BillingDatabase(url: try configuration.requireDatabaseURL(), maxConnections: 4, logger: logger)
        let environment = try configuration.environment(database: database, logger: logger)
        return try await database.whileRunning { try await body(environment) }
    }

    /// `body` with the inbox over a running connection pool as the server's role.
    public func withInbox<T: Sendable>(_ body: @Sendable (EventInbox) async throws -> T) async throws -> T {
        let database = BillingDatabase(url: try configuration.requireDatabaseURL(), maxConnections: 4, logger: logger)
        return try await database.whileRunning { try await body(EventInbox(database: database)) }
    }

    /// The inbox worker (and, with Stripe configured, periodic reconciliation) until SIGTERM or SIGINT.
    public func runWorker() async throws {
        let configuration = self.configuration.withAtLeastOneWorker
        let database = BillingDatabase(
            url: try configuration.requireDatabaseURL(), maxConnections: configuration.inboxWorkers + 2, logger: logger)
        let environment = try configuration.environment(database: database, logger: logger)
        let services: [any Service] = [database.service] + backgroundServices(
            configuration: configuration, environment: environment, metrics: nil)
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// Processes every event due now and returns what happened.
    public func drainInbox() async throws -> [ProcessOutcome] {
        let configuration = self.configuration
        return try await withEnvironment { environment in
            try await makeInboxWorker(configuration: configuration, environment: environment, metrics: nil).drain()
        }
    }

    /// One run of the invoicing job as of `at` (now when nil).
    public func runInvoices(at: Date?) async throws -> InvoiceRunReport {
        let logger = self.logger
        return try await withEnvironment { environment in
            try await InvoicingJob(environment: environment).run(at: at ?? environment.now(), logger: logger)
        }
    }

    /// `billingd migrate` (and `billingd dev`): the roles, the schema and every pending migration, as
    /// DATABASE_OWNER_URL; the versions applied now.
    public func migrate() async throws -> [String] {
        guard let owner = configuration.databaseOwnerURL else {
            throw ConfigurationError.missing("DATABASE_OWNER_URL", "postgres://postgres:PASSWORD@127.0.0.1:5432/billing")
        }
        let migrations = try Migration.load(directory: configuration.migrationsDirectory)
        return try await Migrator(migrations: migrations, logger: logger).run(ownerURL: owner, appURL: configuration.databaseURL)
    }

    /// `billingd dev`: the demo tenant, provisioned unless it exists.
    public func provisionDemoTenant(id: UUID, name: String, email: String) async throws {
        let database = BillingDatabase(url: try configuration.requireDatabaseURL(), maxConnections: 2, logger: logger)
        try await database.whileRunning {
            _ = try await TenantStore(database: database).provision(
                id: id, name: name, email: email, actor: AuditActor(kind: .system, id: "billingd dev"))
        }
    }

    /// `billingd outbox ...`: `body` with the outbox, as the server's role.
    public func withOutbox<T: Sendable>(_ body: @escaping @Sendable (Outbox) async throws -> T) async throws -> T {
        try await withInbox { try await body(Outbox(database: $0.database)) }
    }

    /// `billingd tenants purge`: every row of tenants deleted before `deletedBefore`, as DATABASE_OWNER_URL.
    public func purgeTenants(deletedBefore: Date) async throws -> TenantPurge.Result {
        guard let owner = configuration.databaseOwnerURL else {
            throw ConfigurationError.missing(
                "DATABASE_OWNER_URL", "postgres://postgres:PASSWORD@127.0.0.1:5432/billing (the server's role may delete nothing)")
        }
        return try await TenantPurge.run(ownerURL: owner, deletedBefore: deletedBefore, logger: logger)
    }

    /// `billingd invoices list`: a tenant's invoices, newest first.
    public func invoices(of tenant: UUID, limit: Int) async throws -> [InvoiceSummary] {
        try await withInbox { inbox in
            try await inbox.database.transaction(tenant, operation: "list invoices", readOnly: true) {
                try await $0.invoices.summaries(before: nil, limit: limit)
            }
        }
    }

    /// `billingd invoices show`: one of this server's invoices and its attempts; nil when the tenant has no such invoice.
    public func invoice(
        _ id: UUID, of tenant: UUID
    ) async throws -> (InvoiceRecord, [(attempt: Int, outcome: String, paymentIntentID: String?)])? {
        try await withInbox { inbox in
            try await inbox.database.transaction(tenant, operation: "show invoice", readOnly: true) { transaction in
                guard let invoice = try await transaction.invoices.find(id, lock: false) else { return nil }
                return (invoice, try await transaction.invoices.attempts(of: id))
            }
        }
    }

    /// One reconciliation pass.
    public func reconcile() async throws -> Reconciler.Report {
        let configuration = self.configuration
        return try await withEnvironment { environment in
            guard let stripe = environment.stripe.client else {
                throw ConfigurationError.missing("STRIPE_SECRET_KEY", "sk_test_... (reconciliation reads Stripe's events)")
            }
            return try await makeReconciler(configuration: configuration, environment: environment, stripe: stripe).run()
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
