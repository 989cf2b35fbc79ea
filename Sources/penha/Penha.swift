import Balancer
import BalancerCore
import PenhaCommandLine

#if canImport(Glibc)
import Glibc
#endif

@main
struct Penha {
    static func main() {
        Signals.block()
        do {
            try start(Array(CommandLine.arguments.dropFirst()))
        } catch {
            exit(reporting: error)
        }
    }

    /// The subcommands; the first runs when none is named (pen's command line).
    static var subcommands: [any Subcommand.Type] { [RunCommand.self, CheckCommand.self, CtlCommand.self, StatusCommand.self,
                                                     LogdCommand.self, LogpipeCommand.self, MergelogsCommand.self,
                                                     UpgradeCommand.self] }

    static let program = Program(name: "penha", abstract: "pen, the load balancer, rebuilt in Swift with VRRP built in.",
                                 version: PenhaVersion.current, commands: subcommands.map { $0.outline })

    private static func start(_ words: [String]) throws {
        switch try program.request(words) {
        case .help:
            print(program.help)
        case .version:
            print(program.version)
        case .completionScript(let shell):
            print(program.completionScript(shell), terminator: "")
        case .manual:
            print(program.manual, terminator: "")
        case .command(let name, let arguments):
            for subcommand in subcommands where subcommand.outline.name == name {
                try subcommand.run(arguments)
            }
        }
    }

    /// pen's convention: a bad argument exits 2 with one line naming it; help exits 0.
    static func exit(reporting error: Error) -> Never {
        switch error {
        case let status as ExitStatus:
            // A subcommand that has said what it had to say and only sets the status.
            Glibc.exit(status.code)
        case let help as HelpRequest:
            print(help.text)
            Glibc.exit(0)
        default:
            let reported = reported(error)
            let line = reported.description.split(separator: "\n").first.map(String.init) ?? "\(error)"
            writeToStandardError("penha: \(line)", level: .error)
            Glibc.exit(reported.exitStatus)
        }
    }

    /// Any error as penha reports it: a `PenhaError`, or the one of the kind it stands for. An
    /// error of no kind of penha's exits 2, as it always has.
    static func reported(_ error: Error) -> PenhaError {
        switch error {
        case let error as PenhaError: return error
        case let error as UsageError: return PenhaError(error.description, kind: .usage)
        // A runtime failure: a file that cannot be written, a port in use.
        case let error as RuntimeFailure: return PenhaError(error.description, kind: .io)
        default: return PenhaError("\(error)")
        }
    }
}

/// A subcommand: its command line (`spec`), checked (`validate`), then run.
protocol Subcommand {
    static var spec: CommandSpec<Self> { get }
    /// What the parser cannot check alone: bounds, combinations; a `ConfigurationError` exits 2.
    func validate() throws
    func run() throws
}

extension Subcommand {
    func validate() throws {}

    static var outline: CommandOutline { spec.outline }

    /// Parses, validates and runs.
    static func run(_ words: [String]) throws {
        try parse(words).run()
    }

    /// The words after the subcommand's name, parsed and validated; `--help` is thrown as a
    /// `HelpRequest`.
    static func parse(_ words: [String]) throws -> Self {
        switch try spec.parse(words) {
        case .values(let command):
            try command.validate()
            return command
        case .help:
            throw HelpRequest(text: Penha.program.help(for: spec.outline))
        }
    }
}

/// `--help`: the text goes to stdout, exit status 0.
struct HelpRequest: Error {
    let text: String
}

/// Exit with this status, the subcommand having said why (`check` its errors, `ctl` the answer).
struct ExitStatus: Error {
    let code: Int32
}

/// A failure after the arguments were accepted (a port in use, say): exit status 1.
struct RuntimeFailure: Error, CustomStringConvertible {
    let description: String
}
