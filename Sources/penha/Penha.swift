import ArgumentParser
import Balancer
import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

@main
struct Penha {
    static func main() {
        Signals.block()
        do {
            var command = try PenhaCommand.parseAsRoot(PenArguments.split(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            exit(reporting: error)
        }
    }

    /// pen's convention: a bad argument exits 2 with one line naming it; help exits 0.
    static func exit(reporting error: Error) -> Never {
        // A subcommand that has said what it had to say and only sets the status.
        if let code = error as? ExitCode { Glibc.exit(code.rawValue) }
        if PenhaCommand.exitCode(for: error) == .success {
            print(PenhaCommand.fullMessage(for: error))
            Glibc.exit(0)
        }
        let message = (error as? ConfigurationError)?.message ?? PenhaCommand.message(for: error)
        let line = message.split(separator: "\n").first.map(String.init) ?? "\(error)"
        writeToStandardError("penha: \(line)", level: .error)
        // 1: a runtime failure (a file that cannot be written, a port in use); 2: bad usage or configuration.
        Glibc.exit(error is RuntimeFailure || error is FileError ? 1 : 2)
    }
}

/// A failure after the arguments were accepted (a port in use, say): exit status 1.
struct RuntimeFailure: Error, CustomStringConvertible {
    let description: String
}

struct PenhaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "penha",
        abstract: "pen, the load balancer, rebuilt in Swift with VRRP built in.",
        version: PenhaVersion.current,
        subcommands: [RunCommand.self, CheckCommand.self, CtlCommand.self, StatusCommand.self, LogdCommand.self,
                      LogpipeCommand.self, MergelogsCommand.self],
        defaultSubcommand: RunCommand.self,
        // pen's -h means hash; help is --help only.
        helpNames: [.long]
    )
}
