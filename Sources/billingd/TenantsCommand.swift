import ArgumentParser
import Billing
import BillingServer
import BillingStore
import Foundation
import Logging

/// `billingd tenants purge`: what remains of tenants deleted longer ago than the retention period, removed.
struct Tenants: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Tenant lifecycle for operators.", subcommands: [Purge.self])

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove every row of tenants deleted more than the retention period ago (as DATABASE_OWNER_URL).")

        @Option(help: "Days a deleted tenant's data is kept (default BILLING_TENANT_RETENTION_DAYS, 30).")
        var retentionDays: Int?

        func validate() throws {
            if let retentionDays, retentionDays < 0 { throw ValidationError("--retention-days must be 0 or more") }
        }

        func run() async throws {
            bootstrapLogging()
            let configuration = try await BillingConfiguration.load()
            guard let owner = configuration.databaseOwnerURL else {
                throw ConfigurationError.missing("DATABASE_OWNER_URL", "postgres://postgres:PASSWORD@127.0.0.1:5432/billing (the server's role may delete nothing)")
            }
            let retention = retentionDays.map { Double($0) * 86400 } ?? Double(configuration.tenantRetention.components.seconds)
            let purged = try await TenantPurge.run(
                ownerURL: owner, deletedBefore: Date().addingTimeInterval(-retention), logger: Logger(label: "billingd.tenants"))
            for tenant in purged { print(tenant.uuidString.lowercased()) }
            print("purged \(purged.count) tenant(s)")
        }
    }
}

/// `billingd invoices run [--at TIME]`: the invoicing job, for operators and tests (a fixed clock).
struct Invoices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The invoices this server issues.", subcommands: [Run.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue every invoice due by --at (default now): one per tenant and period, so a rerun creates nothing new.")

        @Option(help: "The time to run as, ISO 8601 (e.g. 2027-01-01T00:00:00Z).")
        var at: String?

        func run() async throws {
            bootstrapLogging()
            var time = Date()
            if let at {
                guard let parsed = try? Date(at, strategy: .iso8601) else {
                    throw ValidationError("--at must be an ISO 8601 time like 2027-01-01T00:00:00Z (got '\(at)')")
                }
                time = parsed
            }
            let jobs = Jobs(configuration: try await BillingConfiguration.load(), logger: Logger(label: "billingd.invoices"))
            let report = try await jobs.runInvoices(at: time)
            for number in report.created { print(number + (report.paidByCredits.contains(number) ? "\tissued, paid by credits" : "\tissued")) }
            let collection = report.collection
            for (label, numbers) in [("charged", collection.charged), ("declined", collection.declined),
                                     ("action required", collection.actionRequired), ("overdue", collection.overdue),
                                     ("written off", collection.writtenOff), ("waiting for a card", collection.waitingForCard)] {
                for number in numbers { print("\(number)\t\(label)") }
            }
            print("issued \(report.created.count) invoice(s), attempted \(collection.charged.count + collection.declined.count + collection.actionRequired.count + collection.overdue.count)")
        }
    }
}
