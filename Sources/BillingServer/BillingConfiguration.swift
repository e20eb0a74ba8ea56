import Billing
import BillingCore
import BillingStore
import Configuration
import Foundation
import Logging
import StripeAPI

/// Everything the server reads from its environment (and `.env`), by DESIGN.md's names.
public struct BillingConfiguration: Sendable {
    /// The server's own login role.
    public var databaseURL: DatabaseURL?
    /// The owner, for migrations and role set-up; when set, `serve` migrates at start.
    public var databaseOwnerURL: DatabaseURL?
    public var appRole: String
    public var databasePoolSize: Int
    public var httpHost: String
    public var httpPort: Int
    /// BILLING_METRICS_TOKEN: a bearer token for Prometheus's scrapes of `/metrics` (an operator JWT works too).
    public var metricsToken: String?
    /// BILLING_METRICS_REFRESH_SECONDS: how old the inbox and outbox counts on `/metrics` may be.
    public var metricsRefresh: Duration
    /// BILLING_HTTP_IDLE_TIMEOUT_SECONDS: a connection that sends nothing for this long is closed (slow clients holding
    /// connections open, a request's headers trickled in).
    public var httpIdleTimeout: Duration
    /// How long a request's head may take once its first bytes arrived, and its body once its head did.
    public var httpHeadTimeout: Duration
    public var httpBodyTimeout: Duration
    /// The first signs; any verifies (rotation).
    public var jwtSecrets: [String]
    public var publicURL: String
    /// Where `migrations/`, `config/plans.json` and `api-spec/openrpc.json` are found.
    public var resourcesDirectory: URL
    public var plansFile: URL
    public var migrationsDirectory: URL
    public var priceOverrides: [String: String]
    public var pastDueGrace: Duration
    public var prorationBehavior: String
    public var tenantRetention: Duration
    public var logLevel: Logger.Level
    /// nil: no Stripe; money paths say so. `billingd dev` runs the stand-in instead.
    public var stripeSecretKey: String?
    public var stripeAPIBase: String
    public var stripeTimeout: Duration
    public var stripeRetryInitial: Duration
    public var stripeMaxAttempts: Int
    public var allowPromotionCodes: Bool
    /// Comma-separated in STRIPE_WEBHOOK_SECRETS; any may sign (rotation).
    public var webhookSecrets: [String]
    public var webhookTolerance: Duration
    public var webhookStoreTimeout: Duration
    /// BILLING_STRIPE_TEST_CLOCKS: each tenant's Stripe customer on a test clock of its own (test keys only).
    public var stripeTestClocks: Bool
    /// BILLING_RATE_LIMIT_CHANGES_PER_MINUTE, BILLING_RATE_LIMIT_PORTAL_PER_MINUTE, BILLING_CHECKOUT_SESSIONS_PER_MINUTE,
    /// BILLING_RATE_LIMIT_REFUNDS_PER_MINUTE, BILLING_RATE_LIMIT_INVOICE_ACTIONS_PER_MINUTE.
    public var rateLimits: RateLimits
    /// Inbox workers run by `serve` (0: none; run `billingd worker` elsewhere) and by `billingd worker`.
    public var inboxWorkers: Int
    public var inboxPollInterval: Duration
    public var inboxRetry: InboxRetryPolicy
    public var inboxEventTimeout: Duration
    /// How often `serve` reconciles with Stripe (nil: never), how far before the newest stored event it lists, and
    /// after how long without an event a live subscription is read again from Stripe.
    public var reconcileInterval: Duration?
    public var reconcileLookback: Duration
    public var reconcileSubscriptionMaxAge: Duration
    /// How often `serve` applies due plan changes and announces ended grace periods (nil: never), and how long
    /// before the period's end a downgrade is applied (so the renewal bills the new price).
    public var planChangeInterval: Duration?
    public var planChangeLead: Duration
    /// Where events to the SaaS product are POSTed (nil: none are written), and the secret that signs them.
    public var eventsURL: String?
    public var eventsSecret: String?
    public var eventsPollInterval: Duration
    public var eventsRetry: InboxRetryPolicy
    public var lowCreditsThreshold: Int
    public var dunningDays: [Int]
    public var writeOffAfter: Duration

    public var openRPCFile: URL { resourcesDirectory.appendingPathComponent("api-spec/openrpc.json") }
    /// The billing page's template, script and styles.
    public var webDirectory: URL { resourcesDirectory.appendingPathComponent("web") }

    /// Environment variables first, then `.env`, then defaults.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> BillingConfiguration {
        let dotEnv = try await EnvironmentVariablesProvider(environmentFilePath: ".env", allowMissing: true)
        let reader = ConfigReader(providers: [EnvironmentVariablesProvider(environmentVariables: environment), dotEnv])
        var overrides: [String: String] = [:]
        for (key, value) in environment where key.hasPrefix("STRIPE_PRICE_") { overrides[key] = value }
        return try BillingConfiguration(reader: reader, priceOverrides: overrides)
    }

    public init(reader: ConfigReader, priceOverrides: [String: String] = [:]) throws {
        func url(_ key: ConfigKey, _ name: String) throws -> DatabaseURL? {
            guard let text = reader.string(forKey: key, isSecret: true), !text.isEmpty else { return nil }
            do { return try DatabaseURL(text) } catch { throw ConfigurationError.invalid(name, "\(error)") }
        }
        databaseURL = try url("database.url", "DATABASE_URL")
        databaseOwnerURL = try url("database.owner.url", "DATABASE_OWNER_URL")
        appRole = reader.string(forKey: "billing.db.app.role", default: "billing_app")
        if let databaseURL, databaseURL.username != appRole {
            throw ConfigurationError.invalid(
                "DATABASE_URL", "its user '\(databaseURL.username)' must be BILLING_DB_APP_ROLE ('\(appRole)')")
        }
        databasePoolSize = reader.int(forKey: "billing.db.pool.size", default: 20)
        httpHost = reader.string(forKey: "billing.http.host", default: "127.0.0.1")
        httpPort = reader.int(forKey: "billing.http.port", default: 8080)
        httpIdleTimeout = .seconds(max(1, reader.int(forKey: "billing.http.idle.timeout.seconds", default: 30)))
        httpHeadTimeout = .seconds(max(1, reader.int(forKey: "billing.http.header.timeout.seconds", default: 10)))
        httpBodyTimeout = .seconds(max(1, reader.int(forKey: "billing.http.body.timeout.seconds", default: 30)))
        jwtSecrets = reader.stringArray(forKey: "billing.jwt.secret", isSecret: true, default: []).filter { !$0.isEmpty }
        publicURL = reader.string(forKey: "billing.public.url", default: "http://\(httpHost):\(httpPort)")
        let root = URL(fileURLWithPath: reader.string(forKey: "billing.resources.dir", default: FileManager.default.currentDirectoryPath))
        resourcesDirectory = root
        plansFile = URL(fileURLWithPath: reader.string(
            forKey: "billing.plans.file", default: root.appendingPathComponent("config/plans.json").path))
        migrationsDirectory = URL(fileURLWithPath: reader.string(
            forKey: "billing.migrations.dir", default: root.appendingPathComponent("migrations").path))
        self.priceOverrides = priceOverrides
        pastDueGrace = .seconds(reader.int(forKey: "billing.grace.period.seconds", default: 3 * 24 * 3600))
        tenantRetention = .seconds(max(0, reader.int(forKey: "billing.tenant.retention.days", default: 30)) * 86400)
        prorationBehavior = reader.string(forKey: "billing.proration.behavior", default: "create_prorations")
        guard ["create_prorations", "always_invoice", "none"].contains(prorationBehavior) else {
            throw ConfigurationError.invalid("BILLING_PRORATION_BEHAVIOR", "use create_prorations, always_invoice or none")
        }
        logLevel = try Self.typed(reader, "billing.log.level", "BILLING_LOG_LEVEL", "use trace, debug, info, notice, warning, error or critical") {
            reader.string(forKey: "billing.log.level", as: Logger.Level.self)
        } ?? .info
        stripeSecretKey = reader.string(forKey: "stripe.secret.key", isSecret: true).flatMap { $0.isEmpty ? nil : $0 }
        stripeAPIBase = reader.string(forKey: "stripe.api.base", default: "https://api.stripe.com")
        stripeTimeout = .milliseconds(reader.int(forKey: "billing.stripe.timeout.ms", default: 30_000))
        stripeRetryInitial = .milliseconds(reader.int(forKey: "billing.stripe.retry.initial.ms", default: 500))
        stripeMaxAttempts = reader.int(forKey: "billing.stripe.max.attempts", default: 3)
        allowPromotionCodes = reader.bool(forKey: "billing.checkout.promotion.codes", default: false)
        stripeTestClocks = reader.bool(forKey: "billing.stripe.test.clocks", default: false)
        rateLimits = RateLimits(
            changesPerMinute: reader.int(forKey: "billing.rate.limit.changes.per.minute", default: 10),
            portalPerMinute: reader.int(forKey: "billing.rate.limit.portal.per.minute", default: 10),
            sessionsPerMinute: reader.int(forKey: "billing.checkout.sessions.per.minute", default: 10),
            refundsPerMinute: reader.int(forKey: "billing.rate.limit.refunds.per.minute", default: 10),
            invoiceActionsPerMinute: reader.int(forKey: "billing.rate.limit.invoice.actions.per.minute", default: 10))
        if stripeTestClocks, stripeSecretKey?.hasPrefix("sk_live_") == true {
            throw ConfigurationError.invalid(
                "BILLING_STRIPE_TEST_CLOCKS", "test clocks exist in test mode only: unset it, or use an sk_test_ key")
        }
        webhookSecrets = reader.stringArray(forKey: "stripe.webhook.secrets", isSecret: true, default: []).filter { !$0.isEmpty }
        webhookTolerance = .seconds(reader.int(forKey: "billing.webhook.tolerance.seconds", default: 300))
        webhookStoreTimeout = .milliseconds(max(1, reader.int(forKey: "billing.webhook.store.timeout.ms", default: 10_000)))
        inboxWorkers = max(0, reader.int(forKey: "billing.inbox.workers", default: 2))
        inboxPollInterval = .milliseconds(max(1, reader.int(forKey: "billing.inbox.poll.ms", default: 2000)))
        inboxEventTimeout = .milliseconds(max(1, reader.int(forKey: "billing.inbox.event.timeout.ms", default: 300_000)))
        inboxRetry = InboxRetryPolicy(
            initial: .milliseconds(max(1, reader.int(forKey: "billing.inbox.retry.initial.ms", default: 1000))),
            maximum: .milliseconds(max(1, reader.int(forKey: "billing.inbox.retry.max.ms", default: 3_600_000))),
            maxAttempts: reader.int(forKey: "billing.inbox.max.attempts", default: 15),
            parkUnresolvedAfter: .seconds(max(1, reader.int(forKey: "billing.inbox.unresolved.park.days", default: 7)) * 86_400))
        let interval = reader.int(forKey: "billing.reconcile.interval.ms", default: 300_000)
        reconcileInterval = interval > 0 ? .milliseconds(interval) : nil
        reconcileLookback = .seconds(max(0, reader.int(forKey: "billing.reconcile.lookback.seconds", default: 3600)))
        eventsURL = reader.string(forKey: "billing.events.url").flatMap { $0.isEmpty ? nil : $0 }
        eventsSecret = reader.string(forKey: "billing.events.secret", isSecret: true).flatMap { $0.isEmpty ? nil : $0 }
        metricsToken = reader.string(forKey: "billing.metrics.token", isSecret: true).flatMap { $0.isEmpty ? nil : $0 }
        if let token = metricsToken, token.count < 16 {
            throw ConfigurationError.invalid("BILLING_METRICS_TOKEN", "use a random token of 16 or more characters")
        }
        metricsRefresh = .seconds(max(0, reader.int(forKey: "billing.metrics.refresh.seconds", default: 15)))
        if eventsURL != nil && (eventsSecret?.count ?? 0) < 16 {
            throw ConfigurationError.invalid(
                "BILLING_EVENTS_SECRET", "set it to a secret of 16+ characters: it signs every event sent to BILLING_EVENTS_URL")
        }
        eventsPollInterval = .milliseconds(max(1, reader.int(forKey: "billing.events.poll.ms", default: 1000)))
        eventsRetry = InboxRetryPolicy(
            initial: .milliseconds(max(1, reader.int(forKey: "billing.events.retry.initial.ms", default: 1000))),
            maximum: .milliseconds(max(1, reader.int(forKey: "billing.events.retry.max.ms", default: 3_600_000))),
            maxAttempts: reader.int(forKey: "billing.events.max.attempts", default: 15))
        lowCreditsThreshold = reader.int(forKey: "billing.credits.low.threshold", default: 100)
        dunningDays = try Self.typed(reader, "billing.dunning.schedule.days", "BILLING_DUNNING_SCHEDULE_DAYS", "give whole days like 1,3,5,7") {
            reader.intArray(forKey: "billing.dunning.schedule.days")
        } ?? [1, 3, 5, 7]
        guard !dunningDays.isEmpty, dunningDays.allSatisfy({ $0 >= 0 }), dunningDays == dunningDays.sorted() else {
            throw ConfigurationError.invalid("BILLING_DUNNING_SCHEDULE_DAYS", "give ascending whole days after the first failure, like 1,3,5,7")
        }
        writeOffAfter = .seconds(max(0, reader.int(forKey: "billing.invoice.write.off.days", default: 30)) * 86400)
        let planChanges = reader.int(forKey: "billing.plan.change.interval.ms", default: 60_000)
        planChangeInterval = planChanges > 0 ? .milliseconds(planChanges) : nil
        planChangeLead = .seconds(max(0, reader.int(forKey: "billing.plan.change.lead.seconds", default: 3600)))
        reconcileSubscriptionMaxAge = .seconds(max(0, reader.int(forKey: "billing.reconcile.subscription.max.age.seconds", default: 86_400)))
    }

    /// A value swift-configuration reads as a type (an array, a log level): nil when unset, and an error saying what to
    /// write when it is set but does not read as that type (swift-configuration alone would fall back in silence).
    static func typed<Value>(
        _ reader: ConfigReader, _ key: ConfigKey, _ name: String, _ hint: String, _ read: () -> Value?
    ) throws -> Value? {
        if let value = read() { return value }
        guard reader.string(forKey: key) == nil else { throw ConfigurationError.invalid(name, hint) }
        return nil
    }

    /// The outbox's writer: enabled when BILLING_EVENTS_URL is set.
    public var notifier: Notifier {
        Notifier(enabled: eventsURL != nil, lowCreditsThreshold: lowCreditsThreshold, grace: pastDueGrace)
    }

    /// Whether the Stripe key is a live one: events of the other mode are kept but ignored.
    public var stripeLiveMode: Bool { stripeSecretKey?.hasPrefix("sk_live_") ?? false }

    /// The Stripe client, when a secret key is configured.
    public func stripeConfiguration() -> StripeConfiguration? {
        stripeSecretKey.map {
            StripeConfiguration(
                apiBase: stripeAPIBase, secretKey: $0, timeout: stripeTimeout,
                retry: RetryPolicy(maxAttempts: stripeMaxAttempts, initialDelay: stripeRetryInitial, maxDelay: stripeRetryInitial * 16))
        }
    }

    /// The catalog from the plans file, with `STRIPE_PRICE_<PLAN>_<INTERVAL>` overrides applied.
    public func loadCatalog() throws -> PlanCatalog {
        guard let data = FileManager.default.contents(atPath: plansFile.path) else {
            throw ConfigurationError.invalid("BILLING_PLANS_FILE", "cannot read \(plansFile.path)")
        }
        do {
            return try PlanCatalog.load(json: data).withPriceOverrides(from: priceOverrides)
        } catch {
            throw ConfigurationError.invalid("BILLING_PLANS_FILE", "\(plansFile.path): \(error)")
        }
    }

    public func requireDatabaseURL() throws -> DatabaseURL {
        guard let databaseURL else {
            throw ConfigurationError.missing("DATABASE_URL", "postgres://billing_app:PASSWORD@127.0.0.1:5432/billing")
        }
        return databaseURL
    }

    public func requireJWTSecrets() throws -> [String] {
        guard !jwtSecrets.isEmpty else {
            throw ConfigurationError.missing("BILLING_JWT_SECRET", "a random string of 32 or more characters")
        }
        if let short = jwtSecrets.first(where: { $0.utf8.count < 32 }) {
            _ = short
            throw ConfigurationError.invalid("BILLING_JWT_SECRET", "every secret must be at least 32 characters")
        }
        return jwtSecrets
    }
}

public enum ConfigurationError: Error, CustomStringConvertible {
    case missing(String, String)
    case invalid(String, String)

    public var description: String {
        switch self {
        case .missing(let name, let example): "\(name) is not set; set it, for example to \(example)"
        case .invalid(let name, let reason): "\(name) is invalid: \(reason)"
        }
    }
}
