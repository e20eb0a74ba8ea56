import ArgumentParser
import BillingServer
import Foundation
import Logging

/// `billingd outbox list|retry`: the events to the product (BILLING_EVENTS_URL), for operators.
struct OutboxCommand: AsyncParsableCommand, StatusChoices {
    static let configuration = CommandConfiguration(
        commandName: "outbox",
        abstract: "See the events to the product and send parked ones again.",
        subcommands: [List.self, Retry.self])

    /// failed: parked after the last attempt.
    static let statuses = ["pending", "delivered", "failed"]

    /// The id the product receives (`evt_<uuid>`), so an operator can match it with the product's logs.
    static func publicID(_ id: UUID) -> String { "evt_" + id.uuidString.lowercased() }

    /// An id as the product or `list` shows it, or the bare UUID.
    static func parseID(_ text: String) -> UUID? {
        UUID(uuidString: text.hasPrefix("evt_") ? String(text.dropFirst(4)) : text)
    }

    /// The jobs' view of the outbox, as the server's role.
    static func jobs() async throws -> Jobs {
        bootstrapLogging()
        return Jobs(configuration: try await BillingConfiguration.load(), logger: Logger(label: "billingd.outbox"))
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Events, newest first.")

        @OptionGroup var options: ListOptions<OutboxCommand>

        func run() async throws {
            let (status, limit) = (options.status, options.limit)
            let entries = try await OutboxCommand.jobs().withOutbox { try await $0.list(status: status, limit: limit) }
            print(["id", "type", "tenant", "created", "status", "attempts", "next_attempt", "last_error"].joined(separator: "\t"))
            for entry in entries {
                print([OutboxCommand.publicID(entry.id), entry.type, entry.tenantID.uuidString.lowercased(),
                       entry.createdAt.formatted(.iso8601), entry.status, String(entry.attempts),
                       entry.status == "pending" ? entry.nextAttemptAt.formatted(.iso8601) : "-", entry.lastError ?? ""]
                    .joined(separator: "\t"))
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send an event again, or every parked one with --failed: due now, attempts counted afresh.",
            discussion: "The product may receive an event twice (it deduplicates by the event's id), never lose one.")

        @Argument(help: "The event's id, as `billingd outbox list` and the product show it (evt_<uuid>).")
        var id: String?
        @Flag(help: "Every parked (failed) event.")
        var failed = false

        func validate() throws {
            switch (id, failed) {
            case (nil, false): throw ValidationError("name an event id, or give --failed to resend every parked event")
            case (.some, true): throw ValidationError("give an event id or --failed, not both")
            case (let id?, false) where OutboxCommand.parseID(id) == nil:
                throw ValidationError("\(id) is not an outbox event id (evt_<uuid>); see `billingd outbox list`")
            default: break
            }
        }

        func run() async throws {
            let target = id.flatMap(OutboxCommand.parseID)
            let retried = try await OutboxCommand.jobs().withOutbox { try await $0.retry(target) }
            if let id, retried.isEmpty {
                throw ValidationError("the outbox has no event \(id); see `billingd outbox list`")
            }
            for (id, previous) in retried { print("\(OutboxCommand.publicID(id))\twas \(previous)") }
            print("\(retried.count) event(s) due again; the server's deliverer sends them")
        }
    }
}
