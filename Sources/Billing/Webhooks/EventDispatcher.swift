import BillingCore
import BillingStore
import Foundation
import JSONRPC
import Logging
import StripeAPI

/// Applies Stripe's events, each inside the transaction that claimed it from the inbox: the tenant is resolved
/// first, then every change runs in that tenant's scope and is audited with the event's id as its actor.
public struct StripeEventProcessor: Sendable {
    public let environment: BillingEnvironment

    public init(environment: BillingEnvironment) {
        self.environment = environment
    }

    var catalog: PlanCatalog { environment.catalog }
    /// Asked for the current object when two events about one subscription share a timestamp; nil without Stripe.
    var stripe: StripeClient? { environment.stripe.client }
    /// Whether the server's key is a live one: an event of the other mode is never applied (even when replayed).
    var liveMode: Bool { environment.liveMode }
    /// Events to the SaaS product, written with each change.
    var notifier: Notifier { environment.notifier }
    var logger: Logger { environment.logger }
    var now: @Sendable () -> Date { environment.now }

    /// The event types with a handler (`StripeEventType`); every other type is stored, acknowledged and marked ignored.
    public static let handledTypes: Set<String> = Set(StripeEventType.allCases.map(\.rawValue))

    public func handle(_ event: ClaimedEvent, in scope: EventScope) async throws -> EventDisposition {
        if let mismatch = WebhookReceiver.modeMismatch(eventLivemode: event.livemode, serverLiveMode: liveMode) {
            return .ignored(tenant: nil, note: mismatch)
        }
        guard let type = StripeEventType(rawValue: event.type) else {
            return .ignored(tenant: nil, note: "no handler for \(event.type)")
        }
        let object: JSONValue
        do {
            object = try Self.decodeObject(JSONValue.self, from: event.payload)
        } catch {
            return .rejected(tenant: nil, reason: "the event's data.object is not readable: \(error)")
        }
        var references = Self.references(of: object)
        if references.customer == nil, let previous = try? Self.decodePreviousAttributes(from: event.payload) {
            // A detached payment method no longer names its customer; the event's previous attributes do.
            references.customer = Self.id(previous["customer"])
        }
        let tenant: UUID
        switch try await resolveTenant(references, in: scope) {
        case .tenant(let resolved):
            tenant = resolved
        case .none:
            return .unresolved(
                note: "no tenant yet: no known tenant_id metadata, subscription, customer or payment in \(object["object"]?.stringValue ?? "the object") \(object["id"]?.stringValue ?? "")",
                waitingFor: references.all)
        case .conflict(let reason):
            return .rejected(tenant: nil, reason: reason)
        }
        let context = EventContext(
            event: event, tenant: tenant, transaction: try await scope.enter(tenant), scope: scope,
            actor: AuditActor(kind: .stripe, id: event.id))
        do {
            return try await apply(type, context)
        } catch let error as DecodingError {
            return .rejected(tenant: tenant, reason: "the \(event.type) object is not as expected: \(error.readableDescription)")
        }
    }

    func apply(_ type: StripeEventType, _ context: EventContext) async throws -> EventDisposition {
        let payload = context.event.payload
        switch type.family {
        case .checkoutCompleted: return try await checkoutCompleted(try Self.decodeObject(CheckoutSession.self, from: payload), context)
        case .checkoutClosed: return try await checkoutClosed(try Self.decodeObject(CheckoutSession.self, from: payload), context)
        case .paymentIntentSucceeded: return try await paymentIntentSucceeded(try Self.decodeObject(PaymentIntent.self, from: payload), context)
        case .paymentIntentFailed: return try await paymentIntentFailed(try Self.decodeObject(PaymentIntent.self, from: payload), context)
        case .paymentIntentCanceled: return try await paymentIntentCanceled(try Self.decodeObject(PaymentIntent.self, from: payload), context)
        case .paymentIntentProcessing: return try await paymentIntentProcessing(try Self.decodeObject(PaymentIntent.self, from: payload), context)
        case .chargeSucceeded: return try await chargeSucceeded(try Self.decodeObject(Charge.self, from: payload), context)
        case .chargeRefunded: return try await chargeRefunded(try Self.decodeObject(Charge.self, from: payload), context)
        case .refund: return try await refundChanged(try Self.decodeObject(Refund.self, from: payload), context)
        case .dispute: return try await disputeChanged(try Self.decodeObject(Dispute.self, from: payload), context)
        case .subscription: return try await subscriptionChanged(try Self.decodeObject(Subscription.self, from: payload), context)
        case .invoice: return try await invoiceChanged(try Self.decodeObject(Invoice.self, from: payload), context)
        case .invoicePayment: return try await invoicePaymentPaid(try Self.decodeObject(InvoicePayment.self, from: payload), context)
        case .customerDeleted: return try await customerDeleted(try Self.decodeObject(Customer.self, from: payload), context)
        case .customerUpdated: return try await customerUpdated(try Self.decodeObject(Customer.self, from: payload), context)
        case .setupSucceeded: return try await setupSucceeded(try Self.decodeObject(SetupIntent.self, from: payload), context)
        case .setupFailed: return try await setupFailed(try Self.decodeObject(SetupIntent.self, from: payload), context)
        case .paymentMethodDetached: return try await paymentMethodDetached(try Self.decodeObject(PaymentMethod.self, from: payload), context)
        case .paymentMethodUpdated: return try await paymentMethodUpdated(try Self.decodeObject(PaymentMethod.self, from: payload), context)
        case .schedule: return try await scheduleChanged(try Self.decodeObject(SubscriptionSchedule.self, from: payload), context)
        }
    }

    struct Envelope<Object: Decodable>: Decodable {
        struct Body: Decodable { var object: Object }
        var data: Body
    }

    static func decodeObject<Object: Decodable>(_ type: Object.Type, from payload: String) throws -> Object {
        try JSONDecoder().decode(Envelope<Object>.self, from: Data(payload.utf8)).data.object
    }

    /// `data.previous_attributes`: what an `*.updated` (or `payment_method.detached`) event changed, as it was.
    static func decodePreviousAttributes(from payload: String) throws -> JSONValue? {
        struct Previous: Decodable {
            struct Body: Decodable {
                var previousAttributes: JSONValue?
                enum CodingKeys: String, CodingKey { case previousAttributes = "previous_attributes" }
            }
            var data: Body
        }
        return try JSONDecoder().decode(Previous.self, from: Data(payload.utf8)).data.previousAttributes
    }

    // MARK: Tenant resolution

    /// What in an object can name its tenant: the subscription, the customer and the payment (refunds and
    /// disputes), which this server links to tenants itself; and `metadata.tenant_id` (or the legacy `tenantId`) on
    /// the object or its parent, or a Checkout Session's `client_reference_id`, which anyone who can write to the
    /// Stripe account can set, and so are trusted only when none of the others is known here.
    struct TenantReferences: Equatable {
        var tenants: [UUID] = []
        var subscription: String?
        var customer: String?
        var payments: [String] = []

        /// Every id, as a wake names it: the events that find no tenant wait for one of these to be linked.
        var all: [String] { tenants.map(\.lowercased) + [subscription, customer].compactMap { $0 } + payments }
    }

    static func references(of object: JSONValue) -> TenantReferences {
        var references = TenantReferences()
        let kind = object["object"]?.stringValue
        let metadata = [object["metadata"], object["parent"]?["subscription_details"]?["metadata"], object["subscription_details"]?["metadata"]]
        for metadata in metadata {
            for key in ["tenant_id", "tenantId"] {
                if let id = metadata?[key]?.stringValue.flatMap(UUID.init(uuidString:)), !references.tenants.contains(id) {
                    references.tenants.append(id)
                }
            }
        }
        if let reference = object["client_reference_id"]?.stringValue.flatMap(UUID.init(uuidString:)), !references.tenants.contains(reference) {
            references.tenants.append(reference)
        }
        references.subscription = kind == "subscription"
            ? object["id"]?.stringValue
            : id(object["subscription"]) ?? id(object["parent"]?["subscription_details"]?["subscription"])
        references.customer = kind == "customer" ? object["id"]?.stringValue : id(object["customer"])
        references.payments = [id(object["payment_intent"]), id(object["charge"]), kind == "charge" ? object["id"]?.stringValue : nil,
                               id(object["payment"]?["payment_intent"]), id(object["payment"]?["charge"])]
            .compactMap { $0 }
        return references
    }

    enum TenantResolution: Equatable {
        case tenant(UUID)
        /// Nothing known here names a tenant yet.
        case none
        /// Two references name different tenants: the event fails, for an operator, rather than guess.
        case conflict(String)
    }

    /// By the subscription, customer and payment links when any is known (they must agree), else by the tenant
    /// named in metadata or the client reference (when it exists); a disagreement names both tenants.
    func resolveTenant(_ references: TenantReferences, in scope: EventScope) async throws -> TenantResolution {
        let known = try await scope.knownTenants(
            subscription: references.subscription, customer: references.customer, payments: references.payments,
            named: references.tenants)
        let linked = known.filter { !$0.reference.hasPrefix("metadata ") }
        let candidates = linked.isEmpty ? known : linked
        guard let first = candidates.first else { return .none }
        let others = known.filter { $0.tenant != first.tenant }
        guard let other = others.first else { return .tenant(first.tenant) }
        let label = { (reference: String) in
            reference.hasPrefix("metadata ") ? "its tenant_id metadata or client_reference_id" : "its \(reference)"
        }
        return .conflict(
            "the event names two tenants: \(label(first.reference)) belongs to tenant \(first.tenant.lowercased), "
            + "\(label(other.reference)) to tenant \(other.tenant.lowercased); fix the Stripe object's metadata or the link, "
            + "then replay it with `billingd events retry`")
    }

    /// An expandable field's id: the string, or the expanded object's `id`.
    static func id(_ value: JSONValue?) -> String? {
        value?.stringValue ?? value?["id"]?.stringValue
    }

    static func date(_ seconds: Int?) -> Date? {
        seconds.map { Date(timeIntervalSince1970: Double($0)) }
    }
}

/// One event being applied: its tenant's transaction, and who the audit trail names.
struct EventContext: Sendable {
    let event: ClaimedEvent
    let tenant: UUID
    let transaction: TenantTransaction
    let scope: EventScope
    let actor: AuditActor

    var created: Date { event.created }

    func processed(_ note: String? = nil) -> EventDisposition { .processed(tenant: tenant, note: note) }
    func stale(_ note: String) -> EventDisposition { .stale(tenant: tenant, note: note) }
    func rejected(_ reason: String) -> EventDisposition { .rejected(tenant: tenant, reason: reason) }
    func ignored(_ note: String) -> EventDisposition { .ignored(tenant: tenant, note: note) }

    func audit(_ action: String, before: [String: String]?, after: [String: String]?) async throws {
        try await transaction.audit.record(actor: actor, action: action, before: before, after: after)
    }
}

/// Not now, maybe later: the event is retried with backoff (a payment not recorded yet, Stripe unreachable).
struct RetryLater: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
