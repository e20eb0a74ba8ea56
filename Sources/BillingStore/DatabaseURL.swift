import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// A `postgres://user:password@host:port/database` URL. `?host=/path/to/.s.PGSQL.5432` selects a unix socket
/// (the socket file itself). `?sslmode=` selects TLS as libpq does: `disable`; `prefer` (TLS when the server offers
/// it); `require` (TLS, certificate not checked); `verify-ca` (TLS, certificate signed by a trusted CA);
/// `verify-full` (that, and issued for the host). The default is `disable` for a local host or socket and
/// `verify-full` otherwise, so a remote database is never reached in plain text, or through an impostor, unless
/// the URL says so. `?sslrootcert=/path/ca.pem` trusts that CA instead of the system's.
public struct DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var socketPath: String?
    public var sslMode: String
    public var sslRootCertificate: String?

    static let sslModes = ["disable", "prefer", "require", "verify-ca", "verify-full"]

    public init(_ text: String) throws(StoreError) {
        guard let components = URLComponents(string: text),
              components.scheme == "postgres" || components.scheme == "postgresql",
              let user = components.user, !user.isEmpty
        else {
            throw .configuration("a database URL must look like postgres://user:password@host:5432/database")
        }
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        self.host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        self.port = components.port ?? 5432
        self.username = user.removingPercentEncoding ?? user
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? self.username : path
        self.socketPath = query["host"].flatMap { $0.isEmpty ? nil : $0 }
        self.sslMode = query["sslmode"] ?? (Self.isLocal(host) || socketPath != nil ? "disable" : "verify-full")
        guard Self.sslModes.contains(sslMode) else {
            throw .configuration("sslmode=\(sslMode) is not one of \(Self.sslModes.joined(separator: ", ")) (for a remote database use verify-full)")
        }
        self.sslRootCertificate = query["sslrootcert"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public var isLocal: Bool { socketPath != nil || Self.isLocal(host) }

    static func isLocal(_ host: String) -> Bool {
        ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host)
    }

    /// The URL with the password masked: safe to log.
    public var description: String {
        "postgres://\(username)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
    }

    /// The full URL, password included: for handing to a child process or configuration, never for logs.
    public var secretURLString: String {
        var components = URLComponents()
        components.scheme = "postgres"
        components.user = username
        components.password = password
        components.host = host
        components.port = port
        components.path = "/" + database
        var query = [URLQueryItem(name: "sslmode", value: sslMode)]
        if let sslRootCertificate { query.append(URLQueryItem(name: "sslrootcert", value: sslRootCertificate)) }
        if let socketPath { query.append(URLQueryItem(name: "host", value: socketPath)) }
        components.queryItems = query
        return components.string ?? ""
    }

    enum TLSMode { case disable, prefer(TLSConfiguration), require(TLSConfiguration) }

    /// `sslmode` as the two PostgresNIO configurations (pool and single connection) need it.
    var tlsMode: TLSMode {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let sslRootCertificate { tls.trustRoots = .file(sslRootCertificate) }
        switch sslMode {
        case "disable": return .disable
        case "verify-full": return .require(tls)
        case "verify-ca":
            tls.certificateVerification = .noHostnameVerification
            return .require(tls)
        case "require":
            tls.certificateVerification = .none
            return .require(tls)
        default:
            tls.certificateVerification = .none
            return .prefer(tls)
        }
    }

    /// The same server and credentials, another database.
    public func with(database: String) -> DatabaseURL {
        var copy = self
        copy.database = database
        return copy
    }

    /// One connection, opened and closed by the caller: for migrations and administration, where a pool (and its
    /// background run task) is more than the work needs.
    public func connect(logger: Logger) async throws -> PostgresConnection {
        var configuration: PostgresConnection.Configuration
        if let socketPath {
            configuration = .init(unixSocketPath: socketPath, username: username, password: password, database: database)
        } else {
            let tls: PostgresConnection.Configuration.TLS = switch tlsMode {
            case .disable: .disable
            case .require(let configuration): .require(try .init(configuration: configuration))
            case .prefer(let configuration): .prefer(try .init(configuration: configuration))
            }
            configuration = .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
    }

    /// Runs `body` on one connection of its own, closed afterwards whatever happens.
    public func withConnection<T: Sendable>(
        logger: Logger, _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await connect(logger: logger)
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    public func clientConfiguration(maxConnections: Int = 20) -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketPath {
            configuration = .init(unixSocketPath: socketPath, username: username, password: password, database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS = switch tlsMode {
            case .disable: .disable
            case .require(let configuration): .require(configuration)
            case .prefer(let configuration): .prefer(configuration)
            }
            configuration = .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.maximumConnections = maxConnections
        return configuration
    }
}

/// What a LISTEN on a channel hears: first that it is listening (anything sent before was missed), then each
/// notification.
public enum ChannelEvent: Sendable, Equatable {
    case listening
    case notified(payload: String)
}

extension DatabaseURL {
    /// LISTENs on `channel` over a connection of its own, as an asynchronous sequence: `.listening` once the LISTEN is
    /// in place, then `.notified` for each notification. It ends (or throws) when the connection does; stop iterating
    /// to close it.
    public func notifications(on channel: String, logger: Logger) -> AsyncThrowingStream<ChannelEvent, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    try await withConnection(logger: logger) { connection in
                        try await connection.listen(on: channel) { notifications in
                            continuation.yield(.listening)
                            for try await notification in notifications {
                                continuation.yield(.notified(payload: notification.payload))
                            }
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
