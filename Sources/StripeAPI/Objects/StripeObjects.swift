import Foundation

// The Stripe objects the product uses, with the fields it reads (Stripe's field names, API version 2026-10-28).
// Fields that older payloads or other API versions leave out are optional.

/// An expandable reference: Stripe sends the id, or the whole object when expanded (and some servers always expand).
public struct StripeID: Decodable, Sendable, Equatable, Hashable, CustomStringConvertible {
    public var id: String

    public init(_ id: String) { self.id = id }

    struct Object: Decodable { var id: String }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let id = try? container.decode(String.self) {
            self.id = id
        } else {
            self.id = try container.decode(Object.self).id
        }
    }

    public var description: String { id }
}

public struct StripeList<Item: Decodable & Sendable>: Decodable, Sendable {
    public var data: [Item]
    public var hasMore: Bool

    enum CodingKeys: String, CodingKey { case data, hasMore = "has_more" }
}

extension StripeList: Equatable where Item: Equatable {}

/// An event as listed by `GET /v1/events`: its header fields, and the whole JSON as Stripe sent it (for the inbox).
public struct StripeEvent: Sendable, Equatable {
    public var id: String
    public var type: String
    public var created: Int
    public var livemode: Bool
    public var raw: Data

    struct Header: Decodable {
        var id: String
        var type: String
        var created: Int
        var livemode: Bool?
    }

    public static func decode(_ raw: Data) throws -> StripeEvent {
        let header = try JSONDecoder().decode(Header.self, from: raw)
        return StripeEvent(id: header.id, type: header.type, created: header.created, livemode: header.livemode ?? false, raw: raw)
    }
}
