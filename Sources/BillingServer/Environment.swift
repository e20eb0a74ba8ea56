import Billing
import BillingStore
import Foundation
import Logging
import StripeAPI

extension BillingConfiguration {
    /// The system's clock: the one place in `Sources/` that reads it. Everything else is handed a clock.
    public static let systemClock: @Sendable () -> Date = { Date() }
    /// Random ids: the one place in `Sources/` that makes them.
    public static let randomIDs: @Sendable () -> UUID = { UUID() }

    /// The Stripe client for `STRIPE_SECRET_KEY`, when one is configured.
    public func stripeClient(logger: Logger) -> StripeClient? {
        stripeConfiguration().map { StripeClient(configuration: $0, logger: logger) }
    }

    /// The environment every service, handler and job of one process shares, from this configuration: the one
    /// factory that `serve`, the commands and the tests use. `stripe` stands in for the configured client (the tests'
    /// stand-in, `billingd dev`'s).
    public func environment(
        database: BillingDatabase, logger: Logger, stripe: StripeClient? = nil, now: @escaping @Sendable () -> Date = systemClock,
        newID: @escaping @Sendable () -> UUID = randomIDs
    ) throws -> BillingEnvironment {
        BillingEnvironment(
            now: now, newID: newID, database: database, catalog: try loadCatalog(),
            settings: BillingSettings(
                pastDueGrace: pastDueGrace, seatProration: prorationBehavior, tenantRetention: tenantRetention, notifier: notifier,
                dunningDays: dunningDays, writeOffAfter: writeOffAfter,
                invoiceLinks: jwtSecrets.isEmpty ? nil : InvoiceLinks(secrets: try requireJWTSecrets()), rateLimits: rateLimits),
            stripe: StripeSettings(
                client: stripe ?? stripeClient(logger: logger), publicURL: publicURL,
                allowPromotionCodes: allowPromotionCodes, testClocks: stripeTestClocks),
            liveMode: stripeLiveMode, logger: logger)
    }
}
