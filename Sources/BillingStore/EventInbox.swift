import Foundation
import Logging
import PostgresNIO

/// The inbox of Stripe events (a platform table), reached only through its SQL functions.
public struct EventInbox: Sendable {
    public let database: BillingDatabase

    public init(database: BillingDatabase) {
        self.database = database
    }

    /// Stores a verified event by its id, durably, before Stripe is answered. False for a repeat delivery.
    /// `ignoredBecause` keeps the event, visibly, without processing it (a livemode mismatch).
    public func store(
        id: String, type: String, created: Date, livemode: Bool, payload: String, ignoredBecause: String?
    ) async throws(StoreError) -> Bool {
        do {
            let rows = try await database.client.query(
                "SELECT billing.store_stripe_event(\(id), \(type), \(created), \(livemode), \(payload)::jsonb, \(ignoredBecause))",
                logger: database.logger)
            for try await stored in rows.decode(Bool.self) { return stored }
            return false
        } catch {
            throw StoreError.wrap(error, operation: "store event")
        }
    }
}
