import Foundation
import StripeAPI
import Testing

/// Every field the client decodes exists at the pinned API version, by Stripe's generated definitions: a decoder
/// that records each key a resource type asks for walks the types, and each recorded path is resolved in
/// `stripe-definitions.json`. Fields kept for older payloads must be named as fallbacks (`olderVersionFields`).
@Suite struct DecodedFieldsTests {
    nonisolated(unsafe) static let resources: [(String, any Decodable.Type, Set<String>)] = [
        ("customer", Customer.self, []),
        ("checkout.session", CheckoutSession.self, []),
        ("billing_portal.session", PortalSession.self, []),
        ("subscription", Subscription.self, Subscription.olderVersionFields),
        ("subscription_item", SubscriptionItem.self, []),
        ("price", Price.self, []),
        ("payment_intent", PaymentIntent.self, []),
        ("refund", Refund.self, []),
        ("setup_intent", SetupIntent.self, []),
        ("charge", Charge.self, []),
        ("dispute", Dispute.self, []),
        ("invoice", Invoice.self, Invoice.olderVersionFields),
        ("invoice_payment", InvoicePayment.self, []),
        ("payment_method", PaymentMethod.self, []),
        ("subscription_schedule", SubscriptionSchedule.self, []),
        ("test_helpers.test_clock", TestClock.self, []),
    ]

    @Test(arguments: resources.map { ($0.0, $0.2) })
    func everyDecodedFieldExistsAtThePinnedVersion(resource: String, fallbacks: Set<String>) throws {
        let type = try #require(Self.resources.first { $0.0 == resource }?.1)
        let recorder = FieldRecorder()
        _ = try type.init(from: RecordingDecoder(recorder: recorder, path: []))
        let paths = recorder.paths
        #expect(!paths.isEmpty, "the recording decoder saw no fields of \(resource)")
        let definitions = StripeDefinitions.pinned
        var unknown: [String] = []
        for path in paths {
            let dotted = path.joined(separator: ".")
            if fallbacks.contains(path[0]) { continue }
            if !Self.resolve(path, in: resource, definitions) { unknown.append(dotted) }
        }
        #expect(unknown.isEmpty, "\(resource) decodes fields Stripe does not have at \(definitions.apiVersion): \(unknown)")
        // A fallback is for a field the pinned version no longer has; one it still has is no fallback.
        for fallback in fallbacks {
            #expect(definitions.resources[resource]?.fields[fallback] == nil,
                    "\(resource).\(fallback) exists at the pinned version: it is no older-version fallback")
        }
    }

    /// The check itself can fail: fields Stripe removed or never had are found, nested ones too.
    @Test func aFieldThePinnedVersionLacksIsFound() throws {
        struct OldSession: Decodable {
            var id: String
            var subscriptionData: [String: String]?
            enum CodingKeys: String, CodingKey { case id, subscriptionData = "subscription_data" }
        }
        struct OldInvoice: Decodable {
            var lines: StripeList<Line>
            struct Line: Decodable { var id: String; var nonsense: Int? }
        }
        for (resource, type, bad) in [("checkout.session", OldSession.self as any Decodable.Type, "subscription_data"),
                                      ("invoice", OldInvoice.self, "lines.data.[].nonsense")] {
            let recorder = FieldRecorder()
            _ = try type.init(from: RecordingDecoder(recorder: recorder, path: []))
            let unknown = recorder.paths.filter { !Self.resolve($0, in: resource, .pinned) }.map { $0.joined(separator: ".") }
            #expect(unknown == [bad])
        }
    }

    @Test func theDefinitionsAreThePinnedVersions() {
        #expect(StripeDefinitions.pinned.apiVersion == StripeConfiguration.apiVersion)
        #expect(StripeDefinitions.pinned.resources["checkout.session"] != nil)
    }

    /// Follows `path` through the resource's field types; false where a key is not a field.
    static func resolve(_ path: [String], in resource: String, _ definitions: StripeDefinitions) -> Bool {
        var shape = definitions.resources[resource]
        var index = 0
        while index < path.count {
            guard let field = shape?.fields[path[index]] else { return false }
            index += 1
            var type = field
            // Arrays and maps are transparent; a list object's `data` leads into its items.
            while true {
                switch type.kind {
                case .array:
                    if index < path.count, path[index] == "[]" { index += 1 }
                    guard let items = type.items else { return true }
                    type = items
                    continue
                case .list:
                    guard index < path.count else { return true }
                    guard ["data", "has_more", "object", "url", "total_count"].contains(path[index]) else { return false }
                    index += 1
                    if index < path.count, path[index] == "[]" { index += 1 }
                    shape = definitions.resources[type.ref ?? ""]
                case .object, .expandable:
                    shape = definitions.resources[type.ref ?? ""]
                    if shape == nil { return index == path.count }
                case .map, .any:
                    return true
                default:
                    return index == path.count
                }
                break
            }
        }
        return true
    }
}

final class FieldRecorder: @unchecked Sendable {
    var paths: [[String]] = []
    func record(_ path: [String]) { if !paths.contains(path) { paths.append(path) } }
}

/// A decoder that says every key is present and answers placeholder values, recording each key asked for.
struct RecordingDecoder: Decoder {
    let recorder: FieldRecorder
    let path: [String]
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Keyed<Key>(recorder: recorder, path: path))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { Unkeyed(recorder: recorder, path: path + ["[]"]) }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(recorder: recorder, path: path) }

    static func placeholder<T: Decodable>(_ type: T.Type, recorder: FieldRecorder, path: [String]) throws -> T {
        switch type {
        case is String.Type: return "x" as! T
        case is Int.Type: return 1 as! T
        case is Bool.Type: return true as! T
        case is Double.Type: return 1.0 as! T
        default: return try T(from: RecordingDecoder(recorder: recorder, path: path))
        }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let recorder: FieldRecorder
        let path: [String]
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { [] }
        func contains(_ key: Key) -> Bool { true }
        func decodeNil(forKey key: Key) throws -> Bool { false }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            recorder.record(path + [key.stringValue])
            return try RecordingDecoder.placeholder(type, recorder: recorder, path: path + [key.stringValue])
        }
        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            recorder.record(path + [key.stringValue])
            return KeyedDecodingContainer(Keyed<NestedKey>(recorder: recorder, path: path + [key.stringValue]))
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            recorder.record(path + [key.stringValue])
            return Unkeyed(recorder: recorder, path: path + [key.stringValue, "[]"])
        }
        func superDecoder() throws -> any Decoder { RecordingDecoder(recorder: recorder, path: path) }
        func superDecoder(forKey key: Key) throws -> any Decoder { RecordingDecoder(recorder: recorder, path: path + [key.stringValue]) }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let recorder: FieldRecorder
        let path: [String]
        var codingPath: [any CodingKey] { [] }
        var count: Int? { 1 }
        var currentIndex = 0
        var isAtEnd: Bool { currentIndex >= 1 }

        init(recorder: FieldRecorder, path: [String]) {
            self.recorder = recorder
            self.path = path
        }

        mutating func decodeNil() throws -> Bool { false }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            currentIndex += 1
            return try RecordingDecoder.placeholder(type, recorder: recorder, path: path)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            currentIndex += 1
            return KeyedDecodingContainer(Keyed<NestedKey>(recorder: recorder, path: path))
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            currentIndex += 1
            return Unkeyed(recorder: recorder, path: path + ["[]"])
        }
        mutating func superDecoder() throws -> any Decoder { RecordingDecoder(recorder: recorder, path: path) }
    }

    struct Single: SingleValueDecodingContainer {
        let recorder: FieldRecorder
        let path: [String]
        var codingPath: [any CodingKey] { [] }
        func decodeNil() -> Bool { false }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try RecordingDecoder.placeholder(type, recorder: recorder, path: path)
        }
    }
}
