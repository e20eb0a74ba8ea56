import Foundation
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A program run to its end with its output collected, through swift-subprocess: the tests' helper scripts, pg_dump,
/// `billingd`'s one-shot commands. (`ChildProcess` remains for what outlives a call: servers a test stops with a
/// signal, and pg_ctl, whose postmaster keeps running after it exits.)
public struct ProgramRun: Sendable {
    /// The exit code; 128 + the signal's number when a signal ended it.
    public var status: Int32
    public var output: String
    public var errors: String

    public var succeeded: Bool { status == 0 }

    /// Runs `argv[0]` (an absolute path) with the rest as its arguments; `environment` nil inherits ours.
    public static func run(_ argv: [String], environment: [String: String]? = nil) async throws -> ProgramRun {
        let result = try await Subprocess.run(
            .path(FilePath(argv[0])), arguments: Arguments(Array(argv.dropFirst())),
            environment: environment.map { variables in
                .custom(Dictionary(uniqueKeysWithValues: variables.map { (Environment.Key(stringLiteral: $0.key), $0.value) }))
            } ?? .inherit,
            output: .string(limit: 64 << 20), error: .string(limit: 64 << 20))
        let status: Int32 = switch result.terminationStatus {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
        return ProgramRun(status: status, output: result.standardOutput, errors: result.standardError)
    }
}
