import BillingCore
import BillingStore
import Crypto
import Foundation
import JSONRPC
import StripeAPI

public struct PageParams: Decodable, Sendable {
    public var limit: Int?
    public var cursor: String?

    public init(limit: Int?, cursor: String?) {
        self.limit = limit
        self.cursor = cursor
    }

    func validatedLimit(default value: Int = 50) throws -> Int {
        let limit = self.limit ?? value
        guard (1...200).contains(limit) else {
            throw BillingError.invalidParams(field: "limit", "limit must be from 1 to 200 (got \(limit))")
        }
        return limit
    }
}

/// What a list that comes back a page at a time is made of, and the key its items are listed under (`entries`,
/// `payments`, `invoices`, `tenants`).
public protocol PageItem: Encodable, Sendable {
    static var listKey: String { get }
}

/// One page of a list, newest first: its items under `Item.listKey`, and `nextCursor`, to pass as `cursor` for the
/// next (older) page; null on the last.
public struct Page<Item: PageItem>: Encodable, Sendable {
    public var items: [Item]
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(items, forKey: Key(stringValue: Item.listKey))
        try container.encode(nextCursor, forKey: Key(stringValue: "nextCursor"))
    }
}

extension Page: Equatable where Item: Equatable {}

extension BillingService {
    static func json(_ text: String?) -> JSONValue {
        guard let text, let value = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else { return .null }
        return value
    }

    /// One page of rows fetched `limit + 1` at a time: the page, and the cursor after its last row when more follow.
    static func page<Row>(_ rows: [Row], limit: Int, cursor: (Row) -> String) -> (rows: [Row], next: String?) {
        let page = Array(rows.prefix(limit))
        return (page, rows.count > limit ? page.last.map(cursor) : nil)
    }

    static func entryCursor(_ cursor: String?, method: String) throws -> Int? {
        try cursor.map { cursor in
            guard let id = Int(cursor), id > 0 else {
                throw BillingError.invalidParams(field: "cursor", "cursor must be a nextCursor from an earlier \(method) answer")
            }
            return id
        }
    }

    /// A keyset cursor over (creation time, id), for lists newest first: parsed, or made from the last row of a page.
    static func timeCursor(_ cursor: String?, method: String) throws -> (Date, String)? {
        try cursor.map { cursor in
            let parts = cursor.split(separator: "/", maxSplits: 1)
            guard parts.count == 2, let micros = Int64(parts[0]) else {
                throw BillingError.invalidParams(field: "cursor", "cursor must be a nextCursor from an earlier \(method) answer")
            }
            return (Date(timeIntervalSince1970: Double(micros) / 1_000_000), String(parts[1]))
        }
    }

    static func timeCursor(at date: Date, id: String) -> String {
        "\(Int64((date.timeIntervalSince1970 * 1_000_000).rounded()))/\(id)"
    }
}
