import BillingStore
import Foundation

/// A child process started with posix_spawn and reaped with waitpid. Foundation's Process can miss a child's exit
/// (seen with pg_ctl, whose postmaster lives on) and its exit monitoring shares threads with Swift's cooperative
/// pool, which a waiting test can starve; this waits on the child itself and nothing else.
public struct ChildProcess: Sendable {
    public let pid: pid_t

    /// Starts `argv[0]` (an absolute path) with standard input from /dev/null and standard output and error appended
    /// to the given files. `environment` nil inherits ours.
    public static func spawn(
        _ argv: [String], environment: [String: String]? = nil, stdoutPath: String, stderrPath: String? = nil
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let stderrPath {
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var arguments = argv.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        let status: Int32
        var pid: pid_t = 0
        if let environment {
            var variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { variables.forEach { free($0) } }
            status = posix_spawn(&pid, argv[0], &actions, nil, &arguments, &variables)
        } else {
            status = posix_spawn(&pid, argv[0], &actions, nil, &arguments, environ)
        }
        guard status == 0 else {
            throw StoreError.configuration("cannot run \(argv[0]): \(String(cString: strerror(status)))")
        }
        return ChildProcess(pid: pid)
    }

    /// Blocks until the child exits; its exit status (128 + signal when a signal ended it).
    public func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return Self.exitCode(status)
    }

    /// Waits for the child without holding a thread: polls every 10 ms, so servers running in this process (on the same
    /// small cooperative pool) keep answering the child while it runs.
    public func exitStatus() async -> Int32 {
        while true {
            if let status = exitStatusIfDone() { return status }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The exit status if the child has exited (reaping it), nil while it runs.
    public func exitStatusIfDone() -> Int32? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid ? Self.exitCode(status) : nil
    }

    public func signal(_ signal: Int32) { kill(pid, signal) }

    /// WIFEXITED / WEXITSTATUS / WTERMSIG spelled out (the C macros are not imported).
    static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
