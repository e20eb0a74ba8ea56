import BillingStore
import Foundation

/// A throwaway or development PostgreSQL cluster in a folder of ours, for `billingd dev` and the tests.
/// initdb and postgres refuse to run as root, so as root they run as the `postgres` OS user.
public struct LocalCluster: Sendable {
    public let directory: URL
    public let port: Int
    public let password: String
    public let binDirectory: String

    public var dataDirectory: URL { directory.appendingPathComponent("data") }
    public var logFile: URL { directory.appendingPathComponent("server.log") }

    /// The superuser, over TCP on 127.0.0.1 (password auth; the unix socket trusts local users).
    public var superuserURL: DatabaseURL {
        // Force-try is safe: the text is ours and well formed.
        try! DatabaseURL("postgres://postgres:\(password)@127.0.0.1:\(port)/postgres")
    }

    public init(directory: URL, port: Int, password: String = "postgres", binDirectory: String? = nil) {
        self.directory = directory
        self.port = port
        self.password = password
        self.binDirectory = binDirectory ?? Self.findBinDirectory()
    }

    public static func findBinDirectory() -> String {
        if let configured = ProcessInfo.processInfo.environment["PG_BIN"], !configured.isEmpty { return configured }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted()
        return versions.last.map { "\(root)/\($0)/bin" } ?? "/usr/lib/postgresql/15/bin"
    }

    /// Initializes the cluster if the folder has none, then starts it unless it is running.
    /// `durable: false` turns off fsync and friends: for tests only, never for data anyone keeps.
    public func start(durable: Bool) throws(StoreError) {
        let fileManager = FileManager.default
        let asRoot = getuid() == 0
        try? fileManager.createDirectory(at: directory.appendingPathComponent("sock"), withIntermediateDirectories: true)
        if !fileManager.fileExists(atPath: dataDirectory.appendingPathComponent("PG_VERSION").path) {
            let passwordFile = directory.appendingPathComponent("pwfile")
            try? Data(password.utf8).write(to: passwordFile)
            if asRoot { try run("/bin/chown", ["-R", "postgres:postgres", directory.path], asPostgres: false) }
            try run("\(binDirectory)/initdb", [
                "-D", dataDirectory.path, "-U", "postgres", "--pwfile=\(passwordFile.path)",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            ], asPostgres: asRoot)
            try? fileManager.removeItem(at: passwordFile)
        } else if asRoot {
            try run("/bin/chown", ["-R", "postgres:postgres", directory.path], asPostgres: false)
        }
        if isRunning { return }
        var options = "-p \(port) -k \(directory.appendingPathComponent("sock").path) -c listen_addresses=127.0.0.1"
        if !durable { options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off" }
        try run("\(binDirectory)/pg_ctl", [
            "-D", dataDirectory.path, "-l", logFile.path, "-w", "-t", "60", "-o", options, "start",
        ], asPostgres: asRoot)
    }

    public var isRunning: Bool {
        (try? run("\(binDirectory)/pg_ctl", ["-D", dataDirectory.path, "status"], asPostgres: getuid() == 0)) != nil
    }

    public func stop() {
        _ = try? run("\(binDirectory)/pg_ctl", ["-D", dataDirectory.path, "-m", "fast", "-w", "stop"], asPostgres: getuid() == 0)
    }

    @discardableResult
    func run(_ executable: String, _ arguments: [String], asPostgres: Bool) throws(StoreError) -> String {
        let argv = asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--", executable] + arguments : [executable] + arguments
        // Output goes to a file, not a pipe: the postmaster that pg_ctl starts inherits it and never closes it.
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("billingd-\(String(UInt64.random(in: 0...UInt64.max), radix: 36)).out").path
        defer { unlink(outputPath) }
        let status = (try? ChildProcess.spawn(argv, stdoutPath: outputPath))?.wait() ?? -1
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let name = (executable as NSString).lastPathComponent
            if status < 0 { throw .configuration("cannot run \(executable); is PostgreSQL installed? (set PG_BIN)") }
            throw .configuration("\(name) failed (exit \(status)): \(text.suffix(600))")
        }
        return text
    }
}
