/// The check `tenants.provision` makes of a billing email: one `@` with something before it, no whitespace, and a
/// dot inside the domain. It walks the characters once: a pattern with nested repetition (the check it replaces)
/// backtracks for seconds on crafted input.
public enum EmailAddress {
    public static func isValid(_ text: String) -> Bool {
        guard !text.contains(where: \.isWhitespace) else { return false }
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty else { return false }
        let domain = parts[1]
        guard let dot = domain.lastIndex(of: ".") else { return false }
        return dot != domain.startIndex && domain.index(after: dot) != domain.endIndex
    }
}
