import Crypto
import Foundation

/// Stripe's webhook signatures: `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=HEX...]`, where each `v1` is
/// HMAC-SHA256 over `"{t}.{raw body}"` keyed with the endpoint secret's UTF-8 bytes (`whsec_` included).
public enum WebhookSignature {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case missingHeader
        case malformedHeader
        case noSignatureMatches
        case stale(ageSeconds: Int)

        public var description: String {
            switch self {
            case .missingHeader: "no Stripe-Signature header"
            case .malformedHeader: "the Stripe-Signature header is not t=...,v1=..."
            case .noSignatureMatches: "no v1 signature matches any configured webhook secret"
            case .stale(let age): "the signature's timestamp is \(age) s old, older than the tolerance"
            }
        }
    }

    /// Verifies before anything parses the body. Any `v1` may match any secret (rotation); timestamps older than
    /// `tolerance` are refused (later ones are not, as in Stripe's libraries); comparisons take the same time whatever
    /// the bytes.
    public static func verify(
        header: String?, body: some DataProtocol, secrets: [String], now: Date, tolerance: Duration
    ) throws(Failure) {
        guard let header, !header.isEmpty else { throw .missingHeader }
        var timestamp: Int?
        var signatures: [[UInt8]] = []
        for item in header.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            if key == "t" {
                timestamp = Int(value)
            } else if key == "v1", let bytes = Hex.decode(value) {
                signatures.append(bytes)
            }
        }
        guard let timestamp, !signatures.isEmpty else { throw .malformedHeader }
        // As Stripe's own libraries check it: only a signature older than the tolerance is refused, so a server
        // whose clock is behind Stripe's still takes every webhook. Overflow-safe: a forged
        // t=-9223372036854775808 must be refused, not trap.
        let (age, overflow) = Int(now.timeIntervalSince1970).subtractingReportingOverflow(timestamp)
        let fresh = overflow ? timestamp > 0 : age <= max(Int(tolerance.components.seconds), 0)
        guard fresh else { throw .stale(ageSeconds: overflow ? Int.max : age) }

        var signedPayload = Array("\(timestamp).".utf8)
        signedPayload.append(contentsOf: body)
        var matched = false
        for secret in secrets {
            let expected = Array(HMAC<SHA256>.authenticationCode(for: signedPayload, using: SymmetricKey(data: Array(secret.utf8))))
            for signature in signatures where constantTimeEqual(expected, signature) {
                matched = true
            }
        }
        guard matched else { throw .noSignatureMatches }
    }

    /// The header Stripe would send for `body` at `timestamp`, one `v1` per secret.
    public static func header(body: some DataProtocol, secrets: [String], timestamp: Int) -> String {
        var signedPayload = Array("\(timestamp).".utf8)
        signedPayload.append(contentsOf: body)
        let signatures = secrets.map { secret in
            Hex.encode(HMAC<SHA256>.authenticationCode(for: signedPayload, using: SymmetricKey(data: Array(secret.utf8))))
        }
        return "t=\(timestamp)," + signatures.map { "v1=\($0)" }.joined(separator: ",")
    }

    /// Accumulates XOR over every byte: no early exit that would leak where the first difference is.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

/// Lowercase hexadecimal, as Stripe's signatures (and this server's own) are written.
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// Nil unless `text` is an even number of hexadecimal digits.
    public static func decode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
