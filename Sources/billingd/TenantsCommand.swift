import ArgumentParser
import BillingServer
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
            let retention = retentionDays.map { Double($0) * 86400 } ?? Double(configuration.tenantRetention.components.seconds)
            let result = try await Jobs(configuration: configuration, logger: Logger(label: "billingd.tenants"))
                .purgeTenants(deletedBefore: BillingConfiguration.systemClock().addingTimeInterval(-retention))
            for tenant in result.purged { print(tenant.uuidString.lowercased()) }
            for (tenant, subscriptions) in result.kept {
                print("kept \(tenant.uuidString.lowercased()): Stripe subscription(s) \(subscriptions.joined(separator: ", ")) still live; "
                      + "reconciliation cancels them (or cancel them in Stripe's dashboard), then purge again")
            }
            print("purged \(result.purged.count) tenant(s)" + (result.kept.isEmpty ? "" : ", kept \(result.kept.count)"))
        }
    }
}

/// `billingd invoices run [--at TIME]`: the invoicing job, for operators and tests (a fixed clock).
struct Invoices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The invoices this server issues.", subcommands: [Run.self, List.self, Show.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A tenant's invoices, newest first (ours and Stripe Billing's).")

        @Option(help: "The tenant's UUID.")
        var tenant: String
        @Option(help: "At most this many.")
        var limit: Int = 50

        func run() async throws {
            guard let tenantID = UUID(uuidString: tenant) else { throw ValidationError("--tenant must be the tenant's UUID") }
            let limit = self.limit
            let jobs = Jobs(configuration: try await BillingConfiguration.load(), logger: Logger(label: "billingd.invoices"))
            let invoices = try await jobs.invoices(of: tenantID, limit: limit)
            print(["number", "source", "status", "amount_due", "currency", "period_start", "id"].joined(separator: "\t"))
            for invoice in invoices {
                print([invoice.number ?? "-", invoice.source, invoice.status ?? "-", String(invoice.amountDue), invoice.currency ?? "-",
                       invoice.periodStart?.formatted(.iso8601) ?? "-", invoice.id].joined(separator: "\t"))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One of this server's invoices, with its lines and attempts.")

        @Argument(help: "The invoice id (from billingd invoices list).")
        var id: String
        @Option(help: "The tenant's UUID.")
        var tenant: String

        func run() async throws {
            guard let tenantID = UUID(uuidString: tenant) else { throw ValidationError("--tenant must be the tenant's UUID") }
            guard let invoiceID = UUID(uuidString: id) else { throw ValidationError("the invoice id is a UUID (billingd invoices list)") }
            let jobs = Jobs(configuration: try await BillingConfiguration.load(), logger: Logger(label: "billingd.invoices"))
            guard let (invoice, attempts) = try await jobs.invoice(invoiceID, of: tenantID) else { throw ValidationError("tenant \(tenant) has no invoice \(id)") }
            print("\(invoice.number)\t\(invoice.status)\t\(invoice.currency)")
            print("period\t\(invoice.periodStart.formatted(.iso8601))\t\(invoice.periodEnd.formatted(.iso8601))")
            for line in invoice.lines { print("line\t\(line.description)\t\(line.quantity) x \(line.unitAmount)\t\(line.amount)") }
            print("subtotal\t\(invoice.subtotal)\ncredits\t\(invoice.creditsApplied) (\(invoice.creditAmount))\namount_due\t\(invoice.amountDue)")
            for attempt in attempts { print("attempt\t\(attempt.attempt)\t\(attempt.outcome)\t\(attempt.paymentIntentID ?? "-")") }
            if let link = invoice.paymentLink { print("payment_link\t\(link)") }
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue every invoice due by --at (default now): one per tenant and period, so a rerun creates nothing new.")

        @Option(help: "The time to run as, ISO 8601 (e.g. 2027-01-01T00:00:00Z).")
        var at: String?

        func run() async throws {
            bootstrapLogging()
            var time: Date?
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
