import Crypto
import Foundation

extension UUID {
    var lowercased: String { uuidString.lowercased() }
}

extension UUID {
    /// A name-based UUID (version 5 layout, SHA-256 instead of SHA-1): the same name gives the same id.
    init(derivedFrom name: String) {
        var bytes = Array(SHA256.hash(data: Array(name.utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0f) | 0x50
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        self = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}
