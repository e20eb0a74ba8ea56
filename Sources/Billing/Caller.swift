import BillingCore
import BillingStore
import Foundation
import Logging

/// What the transport learned about the caller before any method runs.
public enum Authentication: Sendable, Equatable {
    /// No Authorization header.
    case anonymous
    /// A header that did not verify; the reason is safe to show.
    case invalid(String)
    case authenticated(Principal)
}

/// The context every RPC method runs in.
public struct Caller: Sendable {
    public var authentication: Authentication
    public var requestID: String
    public var logger: Logger

    public init(authentication: Authentication, requestID: String, logger: Logger) {
        self.authentication = authentication
        self.requestID = requestID
        self.logger = logger
    }
}

/// An authorized call of a tenant-scoped method: who calls, and for which tenant.
public struct TenantCall: Sendable {
    public var principal: Principal
    public var tenantID: UUID
    public var logger: Logger

    public var actor: AuditActor { AuditActor(principal) }
}

extension AuditActor {
    init(_ principal: Principal) {
        let kind: Kind = switch principal.role {
        case .service: .service
        case .operator: .operator
        case .owner, .admin, .member: .user
        }
        self.init(kind: kind, id: principal.subject)
    }
}
