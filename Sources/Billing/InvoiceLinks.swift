import Crypto
import Foundation
import StripeAPI

/// Links to this server's invoices that open without a sign-in, as Stripe's hosted invoice URLs do, so the billing
/// page can link them and an admin can forward one to accounting: the invoice, its tenant and an expiry, signed with
/// a key derived from the JWT secrets. The first secret signs and any verifies, so a rotation keeps recent links
/// working; a link shows that one invoice and nothing else.
public struct InvoiceLinks: Sendable {
    let keys: [SymmetricKey]
    public let lifetime: Duration

    public init(secrets: [String], lifetime: Duration = .seconds(7 * 86400)) {
        keys = secrets.map { secret in
            // Its own key, so a link's signature is never also a valid token signature or anything else.
            SymmetricKey(data: HMAC<SHA256>.authenticationCode(
                for: Array("billing invoice links v1".utf8), using: SymmetricKey(data: Array(secret.utf8))))
        }
        self.lifetime = lifetime
    }

    public enum Verdict: Sendable, Equatable {
        case valid
        case expired
        case invalid
    }

    /// `{publicURL}/invoices/{id}?tenant=...&expires=...&signature=...`, valid for `lifetime` from `now`.
    public func url(publicURL: String, tenant: UUID, invoice: UUID, now: Date) -> String {
        let expires = Int(now.timeIntervalSince1970) + Int(lifetime.components.seconds)
        let signature = Hex.encode(HMAC<SHA256>.authenticationCode(for: Self.message(tenant, invoice, expires), using: keys[0]))
        return "\(publicURL)/invoices/\(invoice.lowercased)?tenant=\(tenant.lowercased)&expires=\(expires)&signature=\(signature)"
    }

    public func verify(tenant: UUID, invoice: UUID, expires: Int, signature: String, now: Date) -> Verdict {
        guard let code = Hex.decode(signature), code.count == SHA256.byteCount,
              keys.contains(where: { HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: Self.message(tenant, invoice, expires), using: $0) })
        else { return .invalid }
        return expires >= Int(now.timeIntervalSince1970) ? .valid : .expired
    }

    static func message(_ tenant: UUID, _ invoice: UUID, _ expires: Int) -> [UInt8] {
        Array("\(tenant.lowercased):\(invoice.lowercased):\(expires)".utf8)
    }
}
