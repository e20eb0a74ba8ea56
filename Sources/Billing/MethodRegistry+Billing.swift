import BillingCore
import Foundation
import JSONRPC

extension MethodRegistry where Context == Caller {
    /// A method anyone may call without a token.
    mutating func publicMethod<P: Decodable & Sendable, R: Encodable & Sendable>(
        _ name: String, _ kind: MethodKind, _ body: @escaping @Sendable (P, Caller) async throws -> R
    ) {
        register(name, kind: kind, roles: []) { raw, caller in
            try await Self.mapErrors { try await body(try raw.decode(P.self), caller) }
        }
    }

    /// A method acting on one tenant. Tenant users act on the tenant in their token (a `tenantId` param from them is
    /// an unknown param); `service` and `operator` name the tenant with a required `tenantId` param.
    mutating func tenantMethod<P: Decodable & Sendable, R: Encodable & Sendable>(
        _ name: String, _ kind: MethodKind, roles: Set<Role>,
        _ body: @escaping @Sendable (P, TenantCall) async throws -> R
    ) {
        register(name, kind: kind, roles: roles.sorted().map(\.rawValue)) { raw, caller in
            try await Self.mapErrors {
                let principal = try Self.authorize(caller, roles: roles, method: name)
                var params = raw
                let tenantID: UUID
                if principal.role.actsAcrossTenants {
                    tenantID = try Self.namedTenant(params.remove("tenantId"), role: principal.role)
                } else if let own = principal.tenantID {
                    if params.fields["tenantId"] != nil {
                        throw BillingError.invalidParams(
                            field: "tenantId",
                            "unknown param 'tenantId': a \(principal.role.rawValue) acts on the tenant of its token; leave it out")
                    }
                    tenantID = own
                } else {
                    throw BillingError.unauthenticated("the token has no tenant_id claim; a \(principal.role.rawValue) token must name its tenant")
                }
                let decoded = try params.decode(P.self)
                return try await body(decoded, TenantCall(principal: principal, tenantID: tenantID, logger: caller.logger))
            }
        }
    }

    /// A method of the platform (not scoped to one tenant by the caller's token), for the given roles.
    mutating func platformMethod<P: Decodable & Sendable, R: Encodable & Sendable>(
        _ name: String, _ kind: MethodKind, roles: Set<Role>,
        _ body: @escaping @Sendable (P, Principal, Caller) async throws -> R
    ) {
        register(name, kind: kind, roles: roles.sorted().map(\.rawValue)) { raw, caller in
            try await Self.mapErrors {
                let principal = try Self.authorize(caller, roles: roles, method: name)
                return try await body(try raw.decode(P.self), principal, caller)
            }
        }
    }

    static func authorize(_ caller: Caller, roles: Set<Role>, method: String) throws -> Principal {
        switch caller.authentication {
        case .anonymous:
            throw BillingError.unauthenticated("\(method) needs a bearer token: send 'Authorization: Bearer <JWT>'")
        case .invalid(let reason):
            throw BillingError.unauthenticated(reason)
        case .authenticated(let principal):
            guard roles.contains(principal.role) else {
                let allowed = roles.sorted().map(\.rawValue).joined(separator: ", ")
                throw BillingError.forbidden("\(method) is for \(allowed); this token's role is \(principal.role.rawValue)")
            }
            return principal
        }
    }

    static func namedTenant(_ value: JSONValue?, role: Role) throws -> UUID {
        guard let value else {
            throw BillingError.invalidParams(
                field: "tenantId", "missing required param 'tenantId': a \(role.rawValue) token names the tenant it acts on")
        }
        guard let text = value.stringValue, let id = UUID(uuidString: text) else {
            throw BillingError.invalidParams(field: "tenantId", "'tenantId' must be a UUID string")
        }
        return id
    }

    static func mapErrors<R>(_ body: () async throws -> R) async throws -> R {
        do {
            return try await body()
        } catch {
            if let mapped = BillingError.from(error) { throw mapped }
            throw error
        }
    }
}
