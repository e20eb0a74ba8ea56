import BillingCore
import BillingStore
import Foundation
import Logging
import StripeAPI

/// What the RPC services, the webhook handlers and the jobs share: the clock and the id generator, the database, the
/// catalog, Stripe and the settings. Built once, by `BillingConfiguration.environment(...)` in `BillingServer`, which
/// the server, the commands and the tests all use; nothing else in `Sources/` reads the time or makes an id.
public struct BillingEnvironment: Sendable {
    /// The time, for every decision and every stamp.
    public var now: @Sendable () -> Date
    /// New ids: tenants, invoices, intents, outbound events.
    public var newID: @Sendable () -> UUID
    public var database: BillingDatabase
    public var catalog: PlanCatalog
    public var settings: BillingSettings
    public var stripe: StripeSettings
    /// Whether the Stripe key is a live one: an event of the other mode is never applied (even when replayed).
    public var liveMode: Bool
    public var logger: Logger

    public init(
        now: @escaping @Sendable () -> Date, newID: @escaping @Sendable () -> UUID, database: BillingDatabase, catalog: PlanCatalog,
        settings: BillingSettings, stripe: StripeSettings, liveMode: Bool, logger: Logger
    ) {
        self.now = now
        self.newID = newID
        self.database = database
        self.catalog = catalog
        self.settings = settings
        self.stripe = stripe
        self.liveMode = liveMode
        self.logger = logger
    }

    public var tenants: TenantStore { TenantStore(database: database) }
    public var inbox: EventInbox { EventInbox(database: database) }

    /// Events to the SaaS product, stamped and numbered by this environment.
    public var notifier: Notifier {
        var notifier = settings.notifier
        notifier.now = now
        notifier.newID = newID
        return notifier
    }
}
