import Foundation
import Billing
import BillingStore
import Logging
import ServiceLifecycle

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

/// The inbox worker, for as long as the service group runs.
struct InboxWorkerService: Service {
    let worker: InboxWorker

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await worker.run()
        }
    }
}

/// Reconciles with Stripe every `interval` (the first pass one interval after start).
struct ReconciliationService: Service {
    let reconciler: Reconciler
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { return }
                do {
                    _ = try await reconciler.run()
                } catch {
                    logger.warning("reconciliation with Stripe failed; the next pass tries again", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

/// The billing jobs, every `interval`, each on its own (one failing holds up none of the others): pending plan
/// changes (downgrades at the period's end), ended grace periods, and the invoices of plans billed by invoice.
struct PlanChangeService: Service {
    let environment: BillingEnvironment
    let interval: Duration
    let lead: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let now = environment.now
                await job("plan changes") { _ = try await PlanChangeJob(environment: environment).run(now: now(), lead: lead, logger: logger) }
                await job("grace periods") { _ = try await GracePeriodJob(environment: environment).run(now: now(), logger: logger) }
                await job("invoices") { _ = try await InvoicingJob(environment: environment).run(at: now(), logger: logger) }
                try? await Task.sleep(for: interval)
            }
        }
    }

    func job(_ name: String, _ body: () async throws -> Void) async {
        do {
            try await body()
        } catch {
            logger.warning("a billing job failed; the next run tries again", metadata: ["job": "\(name)", "error": "\(error)"])
        }
    }
}

/// Delivers the outbox to BILLING_EVENTS_URL for as long as the service group runs.
struct OutboxService: Service {
    let deliverer: OutboxDeliverer

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await deliverer.run()
        }
    }
}
