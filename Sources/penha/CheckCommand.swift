import Balancer
import BalancerCore
import PenhaCommandLine

#if canImport(Glibc)
import Glibc
#endif

/// `penha check ARGS...`: `run`'s arguments, checked as `run` would take them (every file
/// read, servers resolved, TLS files loaded, vrrp interfaces looked up) without binding or
/// changing anything. pen's `-t` is the connect timeout, hence a subcommand. Run as root, it
/// also warns of the files the packaged systemd unit's user could not use (ServiceUserCheck).
struct CheckCommand: Subcommand {
    var arguments: [String] = []

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "check",
            abstract: "Check a configuration without starting it: run's arguments; prints every error, exits 2 if any.",
            defaults: Self(),
            operands: [.passthrough("arguments", help: "The arguments penha run would be given.", \.arguments)])
    }

    func run() throws {
        // A malformed option or address is thrown: one line, exit 2, as for run.
        let command = try RunCommand.parse(arguments)
        var errors = ConfigurationErrors(collecting: true)
        var warnings: [String] = []
        do {
            let made = try command.makeConfiguration(reporting: &errors)
            try errors.add(ConfigurationCheck.problems(of: made.running, lines: made.lines, pidFile: command.pidFile))
            // As root: what root may use and the packaged unit's user may not.
            if geteuid() == 0 {
                warnings = ServiceUserCheck.warnings(configuration: made.running, lines: made.lines, configFile: command.configFile)
            }
        } catch let error as PenhaError where error.kind == .configuration {
            // One that leaves nothing to check further (no listen address); the others stand.
            try errors.add(error)
        }
        guard errors.all.isEmpty else {
            for error in errors.all { writeToStandardError("penha: \(error)", level: .error) }
            throw ExitStatus(code: 2)
        }
        // Once it is correct: what passes here may still fail under the unit.
        for warning in warnings { writeToStandardError("penha: warning: \(warning)", level: .warning) }
        print("configuration ok")
    }
}

/// Where `RunCommand.makeConfiguration` sends configuration errors: `run` stops at the
/// first (thrown at once), `check` collects every one and goes on.
struct ConfigurationErrors {
    let collecting: Bool
    private(set) var all: [ConfigurationError] = []

    init(collecting: Bool) {
        self.collecting = collecting
    }

    mutating func add(_ error: ConfigurationError) throws {
        guard collecting else { throw error }
        all.append(error)
    }

    mutating func add(_ errors: [ConfigurationError]) throws {
        for error in errors { try add(error) }
    }
}
