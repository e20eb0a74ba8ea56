import Billing
import BillingCore
import Foundation
import JWTKit
import Synchronization

/// Issues and verifies the bearer tokens of the SaaS product's identity layer (HS256).
/// Several secrets may verify, so a secret can be rotated; the first signs.
public final class TokenAuthority: Sendable {
    let keys: [JWTKeyCollection]
    /// Tokens already verified, with their expiry: a frontend sends the same token on every call, and verifying
    /// it again each time is most of a cheap request's cost. Checked against the clock on every hit.
    let verified = Mutex<[String: (principal: Principal, expires: Date)]>([:])
    static let cacheLimit = 10_000
    let now: @Sendable () -> Date

    public init(secrets: [String], now: @escaping @Sendable () -> Date = BillingConfiguration.systemClock) async {
        self.now = now
        var keys: [JWTKeyCollection] = []
        for secret in secrets {
            keys.append(await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256))
        }
        self.keys = keys
    }

    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var tenant_id: String?
        var role: String
        var exp: ExpirationClaim

        func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
        }
    }

    public func issue(role: Role, tenant: UUID?, subject: String, ttl: Duration) async throws -> String {
        let claims = Claims(
            sub: SubjectClaim(value: subject), tenant_id: tenant?.uuidString.lowercased(), role: role.rawValue,
            exp: ExpirationClaim(value: Date(timeIntervalSince1970: (now().timeIntervalSince1970 + Double(ttl.components.seconds)).rounded(.down))))
        return try await keys[0].sign(claims)
    }

    /// Reads an `Authorization` header value; every failure gets a reason safe to show the caller.
    public func authenticate(header: String?) async -> Authentication {
        guard let header else { return .anonymous }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            return .invalid("the Authorization header must be 'Bearer <JWT>'")
        }
        let token = String(parts[1].trimmedOfSpaces)
        let now = self.now()
        if let hit = verified.withLock({ $0[token] }) {
            if hit.expires > now { return .authenticated(hit.principal) }
            _ = verified.withLock { $0.removeValue(forKey: token) }
            return .invalid("the token has expired; get a new one")
        }
        var expired = false
        var malformed = false
        for collection in keys {
            do {
                let claims = try await collection.verify(token, as: Claims.self)
                let authentication = Self.principal(from: claims)
                if case .authenticated(let principal) = authentication {
                    verified.withLock { cache in
                        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
                        cache[token] = (principal, claims.exp.value)
                    }
                }
                return authentication
            } catch let error as JWTError {
                switch error.errorType {
                case .claimVerificationFailure: expired = true
                case .malformedToken: malformed = true
                default: break
                }
            } catch {
                malformed = true
            }
        }
        if expired { return .invalid("the token has expired; get a new one") }
        if malformed { return .invalid("the token is not a well-formed JWT with sub, role and exp claims") }
        return .invalid("the token's signature does not verify")
    }

    static func principal(from claims: Claims) -> Authentication {
        guard let role = Role(rawValue: claims.role) else {
            return .invalid("the token's role '\(claims.role)' is not one of owner, admin, member, service, operator")
        }
        // The subject names the actor in the audit log: it must be storable text.
        guard (1...255).contains(claims.sub.value.count), !claims.sub.value.utf8.contains(0) else {
            return .invalid("the token's sub claim must be 1 to 255 characters, without NUL")
        }
        if role.actsAcrossTenants {
            return .authenticated(Principal(subject: claims.sub.value, role: role, tenantID: nil))
        }
        guard let text = claims.tenant_id, let tenant = UUID(uuidString: text) else {
            return .invalid("a \(role.rawValue) token needs a tenant_id claim holding the tenant's UUID")
        }
        return .authenticated(Principal(subject: claims.sub.value, role: role, tenantID: tenant))
    }
}

extension TokenAuthority {
    /// The roles a token may carry, as `billingd token --role` spells them.
    public static var roleNames: [String] { Role.allCases.map(\.rawValue) }

    /// Whether the named role acts across tenants (its tokens carry no tenant); nil for a name that is no role.
    public static func actsAcrossTenants(roleNamed name: String) -> Bool? { Role(rawValue: name)?.actsAcrossTenants }

    /// A token for the role named `name` (one of `roleNames`).
    public func issue(roleNamed name: String, tenant: UUID?, subject: String, ttl: Duration) async throws -> String {
        guard let role = Role(rawValue: name) else {
            throw ConfigurationError.invalid("--role", "use one of \(Self.roleNames.joined(separator: ", "))")
        }
        return try await issue(role: role, tenant: tenant, subject: subject, ttl: ttl)
    }
}
