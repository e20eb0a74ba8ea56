import Foundation

extension EventInbox {
    /// PostgreSQL's jsonb cannot hold U+0000, so a payload that escapes one (`\u0000`, in a customer's name, say)
    /// could never be stored: Stripe would retry it for days and a reconciliation pass would stop at it. It is kept
    /// with U+FFFD in that place instead. An escaped backslash before `u0000` (`\\u0000`) is text, left as it is.
    public static func storable(_ payload: String) -> String {
        guard payload.contains("\\u0000") else { return payload }
        let bytes = Array(payload.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        var backslashes = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "u"), backslashes % 2 == 1, index + 4 < bytes.count,
               bytes[(index + 1)...(index + 4)].elementsEqual("0000".utf8)
            {
                out += Array("ufffd".utf8)
                index += 5
                backslashes = 0
                continue
            }
            backslashes = byte == UInt8(ascii: "\\") ? backslashes + 1 : 0
            out.append(byte)
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Text for a text column: a NUL becomes U+FFFD.
    public static func storableText(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
    }
}
