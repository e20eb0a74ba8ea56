import BillingCore
import Foundation
import Logging
import PostgresNIO

/// One audit event as stored (before and after as JSON text).
public struct AuditRecord: Sendable, Equatable {
    public var id: Int
    public var actorType: String
    public var actor: String
    public var action: String
    public var before: String?
    public var after: String?
    public var createdAt: Date
}

/// The tenant's audit log: who changed what, before and after.
public struct AuditStore: TenantScopedStore {
    let transaction: TenantTransaction
}

extension TenantTransaction {
    /// The tenant's audit log: who changed what, before and after.
    public var audit: AuditStore { AuditStore(transaction: self) }
}

extension AuditStore {
    public func record(actor: AuditActor, action: String, before: [String: String]?, after: [String: String]?) async throws {
        try await AuditLog.record(connection, tenant: tenant, actor: actor, action: action, before: before, after: after, logger: logger)
    }

    /// Audit events newest first, older than `before` (an event id) when given.
    public func page(before: Int?, limit: Int) async throws -> [AuditRecord] {
        let rows = try await connection.query("""
            SELECT event_id, actor_type, actor, action, before::text, after::text, created_at FROM billing.audit_events
            WHERE tenant_id = \(tenant) AND (\(before)::bigint IS NULL OR event_id < \(before)::bigint)
            ORDER BY event_id DESC
            LIMIT \(limit)
            """, logger: logger)
        var events: [AuditRecord] = []
        for try await (id, actorType, actor, action, before, after, created)
            in rows.decode((Int, String, String, String, String?, String?, Date).self)
        {
            events.append(AuditRecord(id: id, actorType: actorType, actor: actor, action: action, before: before, after: after, createdAt: created))
        }
        return events
    }
}
