import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

public struct RefundView: Encodable, Sendable, Equatable {
    public var refundId: String
    public var paymentId: String
    public var amount: Int
    public var currency: String
    public var status: String
    @OrNull public var reason: String?
    /// Why Stripe could not return the money, when `status` is failed.
    @OrNull public var failureReason: String?
    public var createdAt: Date
    /// True when this call repeated an earlier identical one.
    public var replayed: Bool?

    init(_ record: RefundRecord, replayed: Bool? = nil) {
        refundId = record.refundID
        paymentId = record.paymentID
        amount = record.amount
        currency = record.currency
        status = record.status
        reason = record.reason
        failureReason = record.failureReason
        createdAt = record.createdAt
        self.replayed = replayed
    }
}

public struct PaymentView: Encodable, Sendable {
    public var paymentId: String
    @OrNull public var paymentIntentId: String?
    @OrNull public var chargeId: String?
    public var amount: Int
    public var amountRefunded: Int
    public var amountRefundable: Int
    public var currency: String
    public var purpose: String
    public var credits: Int
    public var dispute: String
    public var createdAt: Date
    public var refunds: [RefundView]
}

/// `billing.payments`'s answer.
public typealias PaymentsPage = Page<PaymentView>

extension PaymentView: PageItem {
    public static let listKey = "payments"
}

public struct RefundParams: Decodable, Sendable {
    public var paymentId: String
    public var amount: Int?
    public var reason: String?
}

extension PaymentService {
    /// `billing.payments`: every successful charge of the tenant, newest first, with its refunds.
    func payments(_ params: PageParams, call: TenantCall) async throws -> PaymentsPage {
        let limit = try params.validatedLimit()
        let before = try Self.timeCursor(params.cursor, method: "billing.payments")
        return try await tenants.database.transaction(call.tenantID, operation: "read payments", readOnly: true) { transaction in
            try await requireReadable(transaction, call)
            let page = Self.page(try await transaction.payments.page(before: before, limit: limit + 1), limit: limit) {
                Self.timeCursor(at: $0.createdAt, id: $0.paymentID)
            }
            let refunds = Dictionary(grouping: try await transaction.payments.refunds(of: page.rows.map(\.paymentID)), by: \.paymentID)
            return PaymentsPage(
                items: page.rows.map { payment in
                    PaymentView(
                        paymentId: payment.paymentID, paymentIntentId: payment.paymentIntentID, chargeId: payment.chargeID,
                        amount: payment.amount, amountRefunded: payment.amountRefunded, amountRefundable: payment.amountRefundable,
                        currency: payment.currency, purpose: payment.purpose, credits: payment.credits, dispute: payment.disputeStatus.rawValue,
                        createdAt: payment.createdAt, refunds: (refunds[payment.paymentID] ?? []).map { RefundView($0) })
                },
                nextCursor: page.next)
        }
    }

    /// What `billing.refund` asks Stripe for; kept with its intent, so that a repeat sends the very same request.
    struct RefundPlan: Codable, Sendable {
        var paymentID: String
        var paymentIntentID: String?
        var chargeID: String?
        var currency: String
        var amount: Int
        var refunded: Int
        var reason: String?
        /// Names the refund everywhere: in its metadata, from which the webhook records it, and in our row.
        var requestKey: String
    }

    /// `billing.refund` (operator), in atomic phases: through Stripe, whole or in part, never more than remains
    /// refundable. The same payment, amount and reason is the same refund (a repeat returns it, unless it failed).
    /// Credits follow `charge.refunded`, and come back when a refund fails.
    func refund(_ params: RefundParams, call: TenantCall) async throws -> RefundView {
        let reason = params.reason?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let reason, reason.count > 500 {
            throw BillingError.invalidParams(field: "reason", "reason must be at most 500 characters")
        }
        let client = try requireStripe()
        let actor = call.actor
        return try await inAtomicPhases(
            // Operators refund a deleted tenant's payments too, until it is purged.
            call.tenantID, .refund, operation: "billing.refund", limit: settings.rateLimits.refunds, includingDeleted: true,
            decide: { transaction -> PhaseOne<RefundPlan, RefundView> in
                guard let payment = try await transaction.payments.lock(params.paymentId) else {
                    throw BillingError.notFound("this tenant has no payment \(params.paymentId); list them with billing.payments")
                }
                // A repeat returns the earlier refund, unless that one failed or was canceled (it returned nothing):
                // then the request is made again, under the next name.
                let firstKey = Self.refundRequestID(
                    tenant: call.tenantID, payment: payment.paymentID, requestKey: "\(params.amount.map(String.init) ?? "rest"):\(reason ?? "")")
                var requestKey = firstKey
                var attempt = 1
                while let earlier = try await transaction.payments.refund(paymentID: payment.paymentID, requestKey: requestKey) {
                    guard RefundRecord.isFinal(earlier.status) else { return .answered(RefundView(earlier, replayed: true)) }
                    attempt += 1
                    requestKey = "\(firstKey):\(attempt)"
                }
                // Refunds asked for here that Stripe's webhook has not confirmed yet count too.
                let refunded = max(payment.amountRefunded, try await transaction.payments.refundTotals(paymentID: payment.paymentID).standing)
                let refundable = payment.amount - refunded
                let amount = params.amount ?? refundable
                guard refundable > 0 else {
                    throw BillingError.preconditionFailed("payment \(payment.paymentID) is refunded in full already")
                }
                guard (1...refundable).contains(amount) else {
                    throw BillingError.invalidParams(
                        field: "amount", "amount must be from 1 to \(refundable) \(payment.currency), what remains refundable of payment \(payment.paymentID) (got \(amount))")
                }
                return .call(request: requestKey, plan: RefundPlan(
                    paymentID: payment.paymentID, paymentIntentID: payment.paymentIntentID, chargeID: payment.chargeID,
                    currency: payment.currency, amount: amount, refunded: refunded, reason: reason, requestKey: requestKey))
            },
            call: { plan, intent in
                var metadata: [(String, FormValue)] = [
                    ("tenant_id", .string(call.tenantID.lowercased)), ("requested_by", .string(actor.id)),
                    ("billing_request", .string(plan.requestKey)),
                ]
                if let reason = plan.reason, !reason.isEmpty { metadata.append(("reason", .string(String(reason.prefix(500))))) }
                var form: FormParameters = ["amount": .int(plan.amount), "metadata": .fields(metadata)]
                if let intent = plan.paymentIntentID { form["payment_intent"] = .string(intent) } else if let charge = plan.chargeID {
                    form["charge"] = .string(charge)
                }
                return try await client.createRefund(form, idempotencyKey: intent.key("refund"))
            },
            record: { transaction, plan, _, created, recorded in
                let refund = RefundRecord(
                    refundID: created.id, paymentID: plan.paymentID, amount: created.amount, currency: created.currency ?? plan.currency,
                    status: created.status ?? "pending", reason: plan.reason,
                    createdAt: created.created.map { Date(timeIntervalSince1970: Double($0)) } ?? self.now())
                // Stored by refund id: a repeat, or the webhook that came first, finds it there.
                _ = try await transaction.payments.upsertRefund(
                    id: refund.refundID, paymentID: refund.paymentID, amount: refund.amount, currency: refund.currency, status: refund.status,
                    reason: refund.reason, createdAt: refund.createdAt, now: self.now(), requestKey: plan.requestKey)
                if recorded { return RefundView(refund, replayed: true) }
                try await transaction.audit.record(actor: actor, action: "refund.requested", before: [
                    "payment": plan.paymentID, "amountRefunded": String(plan.refunded),
                ], after: [
                    "payment": plan.paymentID, "refund": created.id, "amount": String(created.amount), "reason": plan.reason ?? "",
                ])
                return RefundView(refund, replayed: false)
            },
            settle: { intent in
                // Older than Stripe keeps its key: a refund it made carries `billing_request` in its metadata, and its
                // webhook (or reconciliation) records it under that name, which the next request then finds.
                try await self.finish(intent, tenant: call.tenantID, as: "abandoned", because: "settled: a refund it made is recorded by its webhook")
            })
    }

    /// A refund request's name: the same tenant, payment, amount and reason give the same name.
    static func refundRequestID(tenant: UUID, payment: String, requestKey: String) -> String {
        Hex.encode(SHA256.hash(data: Array("\(tenant.lowercased):\(payment):\(requestKey)".utf8)))
    }
}
