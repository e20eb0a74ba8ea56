/// Bounds on what a call's params may hold, checked before a method decodes them, on `/rpc` and `/trpc` alike: the
/// length of each string (by its param's name, wherever it is nested, else a default), the entries of each list, and
/// how deep values nest. A breach is -32602 naming the param and the limit, and the method never runs, so no
/// handler (and no pattern match in one) ever sees an unbounded string.
public struct InputLimits: Sendable, Equatable {
    /// Characters a string param of this name may have.
    public var stringLengths: [String: Int]
    /// For a string param not in `stringLengths`.
    public var defaultStringLength: Int
    /// Entries a list (or object) param may have.
    public var listLength: Int
    /// How deep params may nest (the params object itself is depth 1).
    public var depth: Int

    public init(stringLengths: [String: Int] = [:], defaultStringLength: Int = 1000, listLength: Int = 100, depth: Int = 8) {
        self.stringLengths = stringLengths
        self.defaultStringLength = defaultStringLength
        self.listLength = listLength
        self.depth = depth
    }

    /// No bounds beyond the body's own size.
    public static let none = InputLimits(defaultStringLength: .max, listLength: .max, depth: .max)

    /// The first breach in `params`, as the error the caller gets.
    public func problem(in params: [String: JSONValue]) -> RPCError? {
        problem(.object(params), name: nil, path: nil, depth: 1)
    }

    func problem(_ value: JSONValue, name: String?, path: String?, depth: Int) -> RPCError? {
        switch value {
        case .string(let text):
            let limit = name.flatMap { stringLengths[$0] } ?? defaultStringLength
            // Counted in UTF-8 bytes first, which bounds the characters and costs nothing for long strings.
            if text.utf8.count > limit, text.count > limit {
                return .invalidParams(field: path, "'\(path ?? "params")' is \(text.count) characters long; at most \(limit) are allowed")
            }
            // No text column can hold U+0000 (PostgreSQL refuses it): refused here, saying so, not failed on storing.
            guard text.utf8.contains(0) else { return nil }
            return .invalidParams(field: path, "'\(path ?? "params")' contains the NUL character (\\u0000), which no text may hold; remove it")
        case .array(let items):
            if let problem = tooMany(items.count, path: path, depth: depth) { return problem }
            for (index, item) in items.enumerated() {
                if let problem = problem(item, name: name, path: "\(path ?? "params")[\(index)]", depth: depth + 1) { return problem }
            }
            return nil
        case .object(let fields):
            if let problem = tooMany(fields.count, path: path, depth: depth) { return problem }
            for (key, field) in fields.sorted(by: { $0.key < $1.key }) {
                if let problem = problem(field, name: key, path: path.map { "\($0).\(key)" } ?? key, depth: depth + 1) { return problem }
            }
            return nil
        default:
            return nil
        }
    }

    func tooMany(_ count: Int, path: String?, depth: Int) -> RPCError? {
        if depth > self.depth {
            return .invalidParams(field: path, "'\(path ?? "params")' nests deeper than \(self.depth) levels")
        }
        guard count > listLength else { return nil }
        return .invalidParams(field: path, "'\(path ?? "params")' has \(count) entries; at most \(listLength) are allowed")
    }
}
