import BillingServer
import BillingDevSupport
import Foundation
import HummingbirdTesting
import Logging
import Synchronization
import Testing

/// Every line the server logs, message and metadata, as text.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let logs: CapturedLogs
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            logs.append("\(event.message) \(merged.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " "))")
        }
    }
}

@Suite struct LogRedactionTests {
    /// An invoice link's signature (a credential while the link lives) never reaches the log, even at debug level.
    @Test func debugLogsCarryPathsNotInvoiceLinkSignatures() async throws {
        let database = try await TestCluster.shared.freshDatabase()
        let logs = CapturedLogs()
        let logger = Logger(label: "billingd") { _ in CapturedLogs.Handler(logs: logs) }
        let configuration = try TestServer.configuration(database, extra: ["BILLING_LOG_LEVEL": "debug"])
        let app = try await buildApplication(configuration: configuration, logger: logger)
        let signature = String(repeating: "5ec7e7", count: 10)
        try await app.test(.live) { client in
            let uri = "/invoices/\(UUID().uuidString.lowercased())?tenant=\(UUID().uuidString.lowercased())&expires=9999999999&signature=\(signature)"
            _ = try await client.execute(uri: uri, method: .get)
        }
        let lines = logs.all
        #expect(lines.contains { $0.hasPrefix("Request") && $0.contains("/invoices/") }, "\(lines.suffix(5))")
        #expect(!lines.contains { $0.contains(signature) })
    }
}
