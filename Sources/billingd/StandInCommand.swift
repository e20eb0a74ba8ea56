import ArgumentParser
import BillingServer
import Foundation
import Hummingbird
import Logging
import StripeStandIn

/// `billingd stand-in`: the local Stripe stand-in alone, knowing the prices of the plan catalog.
struct StandInCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stand-in",
        abstract: "Run the local Stripe stand-in (API subset, hosted Checkout page, signed webhooks).")

    @Option(help: "Port to listen on (127.0.0.1).")
    var port: Int = 12111
    @Option(help: "Where to POST signed webhook events (e.g. http://127.0.0.1:8080/webhooks/stripe).")
    var webhookURL: String?
    @Option(help: "The webhook signing secret (whsec_...).")
    var webhookSecret: String = "whsec_stand_in"
    @Option(help: "Base URL of the hosted pages (default http://127.0.0.1:PORT).")
    var publicURL: String?
    @Option(help: "First retry delay of a failed webhook delivery, in milliseconds.")
    var webhookRetryMs: Int = 1000

    func run() async throws {
        bootstrapLogging()
        let configuration = try await BillingConfiguration.load()
        let catalog = try configuration.loadCatalog()
        let state = StandInState(configuration: StandInConfiguration(
            publicURL: publicURL ?? "http://127.0.0.1:\(port)", webhookURL: webhookURL, webhookSecret: webhookSecret,
            prices: catalog.standInPrices, webhookRetryInitial: .milliseconds(webhookRetryMs), clock: BillingConfiguration.systemClock))
        let app = buildStandInApplication(state: state, port: port)
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }
}
