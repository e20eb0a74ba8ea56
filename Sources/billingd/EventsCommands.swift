import ArgumentParser
import BillingServer
import Foundation
import Logging

/// `billingd worker`: the inbox worker (and periodic reconciliation) without the HTTP server.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Process the Stripe event inbox (several may run at once), until SIGTERM.")

    @Flag(help: "Process every event due now, print what happened, and exit.")
    var once = false

    func run() async throws {
        bootstrapLogging()
        limitMallocArenas()
        let jobs = Jobs(configuration: try await BillingConfiguration.load(), logger: Logger(label: "billingd.worker"))
        guard once else {
            try await jobs.runWorker()
            return
        }
        let outcomes = try await jobs.drainInbox()
        for outcome in outcomes {
            print("\(outcome.event.id)\t\(outcome.event.type)\t\(outcome.label)")
        }
        print("\(outcomes.count) event(s) processed")
    }
}

/// `billingd reconcile`: one pass of reconciliation with Stripe.
struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store Stripe events the inbox is missing and re-read subscriptions no event touched lately.")

    func run() async throws {
        bootstrapLogging()
        let jobs = Jobs(configuration: try await BillingConfiguration.load(), logger: Logger(label: "billingd.reconcile"))
        let report = try await jobs.reconcile()
        print("listed \(report.listed) event(s) from Stripe, stored \(report.stored) missing, re-read \(report.refreshed) subscription(s)"
              + (report.failed > 0 ? ", \(report.failed) could not be read (see the log)" : ""))
    }
}

/// `billingd events list|show|retry`: the inbox, for operators.
struct Events: AsyncParsableCommand, StatusChoices {
    static let configuration = CommandConfiguration(
        abstract: "See and replay the Stripe event inbox.",
        subcommands: [List.self, Show.self, Retry.self])

    static func jobs() async throws -> Jobs {
        bootstrapLogging()
        return Jobs(configuration: try await BillingConfiguration.load(), logger: Logger(label: "billingd.events"))
    }

    static let statuses = ["pending", "processed", "ignored", "unresolved", "parked", "stale", "failed"]

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Events, newest first.")

        @OptionGroup var options: ListOptions<Events>

        func run() async throws {
            let (status, limit) = (options.status, options.limit)
            let entries = try await Events.jobs().withInbox { try await $0.list(status: status, limit: limit) }
            print(["id", "type", "created", "status", "attempts", "tenant", "last_error"].joined(separator: "\t"))
            for entry in entries {
                print([entry.id, entry.type, entry.created.formatted(.iso8601), entry.status, String(entry.attempts),
                       entry.tenantID?.uuidString.lowercased() ?? "-", entry.lastError ?? ""].joined(separator: "\t"))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One event, with its payload, as JSON.")

        @Argument(help: "The event id (evt_...).")
        var id: String

        func run() async throws {
            let id = self.id
            guard let entry = try await Events.jobs().withInbox({ try await $0.show(id) }) else {
                throw ValidationError("the inbox has no event \(id); see `billingd events list`")
            }
            var fields: [String: Any] = [
                "id": entry.id, "type": entry.type, "created": entry.created.formatted(.iso8601), "status": entry.status,
                "attempts": entry.attempts, "failures": entry.failures ?? 0, "receivedAt": entry.receivedAt.formatted(.iso8601),
                "lastError": entry.lastError ?? NSNull(), "tenantId": entry.tenantID?.uuidString.lowercased() ?? NSNull(),
                "processedAt": entry.processedAt?.formatted(.iso8601) ?? NSNull(),
                "nextAttemptAt": entry.nextAttemptAt?.formatted(.iso8601) ?? NSNull(),
            ]
            fields["payload"] = entry.payload.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } ?? NSNull()
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay an event: due now, attempts counted afresh (its effects still apply once).")

        @Argument(help: "The event id (evt_...).")
        var id: String

        func run() async throws {
            let id = self.id
            guard let previous = try await Events.jobs().withInbox({ try await $0.retry(id) }) else {
                throw ValidationError("the inbox has no event \(id); see `billingd events list`")
            }
            print("\(id) was \(previous); it is pending again and the worker will process it")
        }
    }
}

/// What a command's `--status` may name.
protocol StatusChoices {
    static var statuses: [String] { get }
}

/// `--status` and `--limit` of a `list` command, checked before it connects.
struct ListOptions<Choices: StatusChoices>: ParsableArguments {
    @Option(help: "Only those of this status: \(Choices.statuses.joined(separator: ", ")).")
    var status: String?
    @Option(help: "At most this many.")
    var limit: Int = 50

    func validate() throws {
        if let status, !Choices.statuses.contains(status) {
            throw ValidationError("--status must be one of: \(Choices.statuses.joined(separator: ", "))")
        }
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
    }
}
