import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

public struct AuditEntry: Encodable, Sendable {
    public var id: String
    public var actorType: String
    public var actor: String
    public var action: String
    public var before: JSONValue
    public var after: JSONValue
    public var createdAt: Date
}

/// `billing.auditLog`'s answer.
public typealias AuditPage = Page<AuditEntry>

extension AuditEntry: PageItem {
    public static let listKey = "entries"
}

extension TenantService {
    /// `billing.auditLog`: newest first, by cursor.
    func auditLog(_ params: PageParams, call: TenantCall) async throws -> AuditPage {
        let limit = try params.validatedLimit()
        let before = try Self.entryCursor(params.cursor, method: "billing.auditLog")
        return try await tenants.database.transaction(call.tenantID, operation: "read audit log", readOnly: true) { transaction in
            try await requireReadable(transaction, call)
            let page = Self.page(try await transaction.audit.page(before: before, limit: limit + 1), limit: limit) { String($0.id) }
            return AuditPage(
                items: page.rows.map { record in
                    AuditEntry(
                        id: String(record.id), actorType: record.actorType, actor: record.actor, action: record.action,
                        before: Self.json(record.before), after: Self.json(record.after), createdAt: record.createdAt)
                },
                nextCursor: page.next)
        }
    }
}
