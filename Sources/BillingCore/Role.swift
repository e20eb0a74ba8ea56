import Foundation

/// Who is calling, as the SaaS product's identity layer says in the bearer token.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    case owner, admin, member, service, `operator`

    /// `service` (the SaaS backend) and `operator` (platform staff) act across tenants:
    /// their tokens carry no tenant, and every tenant-scoped call names one.
    public var actsAcrossTenants: Bool { self == .service || self == .operator }

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

extension Set where Element == Role {
    /// Reads a tenant's billing: everyone but strangers.
    public static let readers: Set<Role> = [.owner, .admin, .member, .service, .operator]
    /// Changes plans and seats and buys: owners and admins, and operators on their behalf.
    public static let managers: Set<Role> = [.owner, .admin, .operator]
    public static let service: Set<Role> = [.service]
    public static let operators: Set<Role> = [.operator]
}

/// An authenticated caller.
public struct Principal: Sendable, Equatable {
    public var subject: String
    public var role: Role
    /// Present for tenant users; nil for `service` and `operator`.
    public var tenantID: UUID?

    public init(subject: String, role: Role, tenantID: UUID?) {
        self.subject = subject
        self.role = role
        self.tenantID = tenantID
    }
}
