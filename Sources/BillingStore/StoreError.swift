import PostgresNIO

/// Everything the store can fail with, carrying what a log reader needs; mapped to wire errors in one place (Billing).
public enum StoreError: Error, CustomStringConvertible {
    case configuration(String)
    case migration(file: String, reason: String)
    case editedMigration(file: String)
    case unknownAppliedMigration(version: String)
    case conflict(String)
    case database(operation: String, message: String, sqlState: String?)

    public var description: String {
        switch self {
        case .configuration(let reason): "configuration: \(reason)"
        case .migration(let file, let reason): "migration \(file) failed: \(reason)"
        case .editedMigration(let file):
            "migration \(file) was edited after it was applied; add a new migration instead of changing an applied one"
        case .unknownAppliedMigration(let version):
            "the database has migration \(version) applied, which this build does not know; run a newer build"
        case .conflict(let reason): "conflict: \(reason)"
        case .database(let operation, let message, let state): "\(operation): \(message) [\(state ?? "-")]"
        }
    }

    /// Unwraps PostgresNIO's errors into their server message and SQLSTATE (PSQLError hides them from `description`).
    public static func wrap(_ error: any Error, operation: String) -> StoreError {
        if let error = error as? StoreError { return error }
        if let transaction = error as? PostgresTransactionError {
            if let inner = transaction.closureError { return wrap(inner, operation: operation) }
            if let inner = transaction.commitError { return wrap(inner, operation: operation) }
            if let inner = transaction.beginError { return wrap(inner, operation: operation) }
            if let inner = transaction.rollbackError { return wrap(inner, operation: operation) }
        }
        if let psql = error as? PSQLError {
            let message = psql.serverInfo?[.message] ?? "\(psql.code)"
            return .database(operation: operation, message: message, sqlState: psql.serverInfo?[.sqlState])
        }
        return .database(operation: operation, message: String(describing: error), sqlState: nil)
    }

    public var sqlState: String? {
        if case .database(_, _, let state) = self { state } else { nil }
    }

    /// A deadlock (40P01) or serialization failure (40001): nothing was applied, and the same work may run again.
    public var isConflict: Bool { sqlState == "40P01" || sqlState == "40001" }
}
