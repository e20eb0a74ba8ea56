import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

/// Settings of the application services that are not wiring.
public struct BillingSettings: Sendable {
    /// How long a past-due subscription stays entitled.
    public var pastDueGrace: Duration
    /// Stripe's `proration_behavior` for seat changes and upgrades.
    public var seatProration: String
    /// How long a deleted tenant's data stays (readable to operators) before `billingd tenants purge` removes it.
    public var tenantRetention: Duration
    /// Events to the SaaS product (the outbox).
    public var notifier: Notifier
    /// Dunning: days after the first failed attempt at which an invoice is tried again; after the last, it is overdue.
    public var dunning: DunningSchedule
    /// How long an overdue invoice waits before it is written off.
    public var writeOffAfter: Duration
    /// Signs the links to this server's invoices that `billing.invoices` gives owners and admins; without it, the
    /// links need the bearer token.
    public var invoiceLinks: InvoiceLinks?
    /// Per tenant, for the methods that call Stripe on every request (besides Checkout's own limit).
    public var rateLimits: RateLimits

    public init(
        pastDueGrace: Duration = .seconds(3 * 24 * 3600), seatProration: String = "create_prorations",
        tenantRetention: Duration = .seconds(30 * 86400), notifier: Notifier = .disabled,
        dunningDays: [Int] = [1, 3, 5, 7], writeOffAfter: Duration = .seconds(30 * 86400), invoiceLinks: InvoiceLinks? = nil,
        rateLimits: RateLimits = RateLimits()
    ) {
        self.rateLimits = rateLimits
        self.invoiceLinks = invoiceLinks
        self.notifier = notifier
        self.dunning = DunningSchedule(days: dunningDays)
        self.writeOffAfter = writeOffAfter
        self.pastDueGrace = pastDueGrace
        self.seatProration = seatProration
        self.tenantRetention = tenantRetention
    }
}
