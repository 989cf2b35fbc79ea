import NIOCore
import VRRPCore

/// pen's command language (penctl): one parser for the config file, `-O` and the control
/// socket. Each line becomes a `Command`: the value its keyword's parse made
/// (`CommandKeyword.table`), which carries its behaviour (`CommandBehaviour`): its effect on
/// the configuration or the running balancer, its line for `write`, and what it needs
/// prepared off the event loop. Anything malformed is an error that says what is wrong
/// instead of being ignored as pen does.
public struct Command: Equatable, Sendable, CustomStringConvertible {
    let behaviour: any CommandBehaviour

    init(_ behaviour: some CommandBehaviour) {
        self.behaviour = behaviour
    }

    public static func == (lhs: Command, rhs: Command) -> Bool { lhs.behaviour.isEqual(to: rhs.behaviour) }

    /// The command as a line that parses back to it.
    public var text: String { behaviour.line.joined(separator: " ") }

    public var description: String { text }

    /// What the command needs done off the event loop before it runs.
    package var preparation: [Preparation] { behaviour.preparation }

    /// The command's value, when it is a `Payload` (`ServerChange`, `VRRPInstanceConfiguration`, ...).
    public func payload<Payload>(as type: Payload.Type) -> Payload? { behaviour as? Payload }

    /// Blocking work a command needs before it runs: done on the thread pool
    /// (`BalancerService`) or while reading a file (`ConfigFile`), never on the event loop.
    package enum Preparation: Equatable, Sendable {
        /// A host name to look up.
        case resolve(host: String)
        /// A file whose commands take the line's place.
        case include(path: String)
        /// The connection log becomes this file, opened before; nil: none.
        case log(path: String?)
        /// A report file penha will replace: checked that it can.
        case replaceable(path: String)
        /// A key file, read to check it.
        case syncKey(path: String)
        /// The answer reports the VRRP instances (asking the interfaces blocks).
        case vrrpReports
    }

    /// `allowingFiles` false (a TCP control port without `control_tcp_files`): a line that
    /// names a file (`CommandKeyword.FileUse`) is refused, with the reason.
    public static func parse(_ line: String, allowingFiles: Bool = true) throws -> Command {
        // Split on scalars, not Characters: after a tab a combining mark starts a Character of
        // its own, while after the space that `text` joins with it would join the space's.
        var words = line.unicodeScalars.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            .map { String(String.UnicodeScalarView($0)) }
        guard let first = words.first else { throw ConfigurationError("empty command") }
        // In a config file '#' starts a comment: a command holding one would not read back from `write`.
        guard !line.contains("#") else {
            throw ConfigurationError("'#' cannot be part of a command: in a config file it starts a comment")
        }
        // C reads text up to a NUL: an address check passed "::\0]" as "::", and a file name
        // would name another file. No command holds one.
        guard !line.unicodeScalars.contains("\0") else {
            throw ConfigurationError("a NUL character cannot be part of a command")
        }
        words.removeFirst()
        guard first == "no" else {
            guard let keyword = CommandKeyword.named[first] else { throw ConfigurationError("unknown command '\(first)'") }
            guard allowingFiles || !keyword.fileUse.isNamed(by: words) else { throw keyword.fileUse.refusal(of: first) }
            return try keyword.parse(words)
        }
        let negated = words.first.flatMap { CommandKeyword.named[$0]?.negation }
        guard let negated, let command = try negated.parse(Array(words.dropFirst())) else {
            throw ConfigurationError("'no' takes one of: \(CommandKeyword.negationUsages.joined(separator: ", "))")
        }
        return command
    }
}

/// The commands by their keyword's form, for code and tests that make one directly.
extension Command {
    public static func flag(_ flag: Flag, _ enabled: Bool) -> Command { Command(FlagChange(flag: flag, enabled: enabled)) }
    /// nil: the question, `NAME` alone.
    public static func setting(_ setting: Setting, _ value: Int?) -> Command { Command(SettingChange(setting: setting, value: value)) }
    public static func file(_ file: FileSetting, _ change: FileChange) -> Command { Command(FileCommand(file: file, change: change)) }
    public static func source(_ address: String) -> Command { Command(SourceAddress(address: address)) }
    public static func server(_ change: ServerChange) -> Command { Command(change) }
    public static func query(_ query: Query) -> Command { Command(query) }
    public static func recent(_ seconds: Int?) -> Command { Command(Recent(seconds: seconds)) }
    public static func connection(_ number: Int) -> Command { Command(ConnectionQuestion(number: number)) }
    public static func close(_ number: Int) -> Command { Command(Close(number: number)) }
    public static func include(_ path: String) -> Command { Command(Include(path: path)) }
    public static func write(_ path: String?) -> Command { Command(Write(path: path)) }
    public static let exit = Command(Exit())
    public static let reload = Command(Reload())
    public static func vrrp(_ instance: VRRPInstanceConfiguration) -> Command { Command(instance) }
    public static func removeVRRP(vrid: UInt8, interface: String?) -> Command { Command(RemoveVRRP(vrid: vrid, interface: interface)) }
    public static func accessRule(list: Int, _ rule: AccessRule) -> Command { Command(AccessRuleChange(list: list, rule: rule)) }
    public static func clearAccessList(_ list: Int) -> Command { Command(ClearAccessList(list: list)) }
    public static func tls(_ command: TLSCommand) -> Command { Command(command) }
    /// nil: `no healthcheck`.
    public static func healthCheck(_ settings: HealthCheckSettings?) -> Command { Command(HealthCheckChange(settings: settings)) }
    /// nil: `no metrics`.
    public static func metrics(_ endpoint: MetricsEndpoint?) -> Command { Command(MetricsChange(endpoint: endpoint)) }
    public static func listen(_ address: Endpoint) -> Command { Command(ListenAddress(address: address)) }
    /// nil: `no sync`.
    public static func sync(_ settings: SyncSettings?) -> Command { Command(SyncCommand(settings: settings)) }
    /// nil: `no bgp`.
    public static func bgp(_ settings: BGPSettings?) -> Command { Command(BGPChange(settings: settings)) }
    public static func bgpOperator(_ action: BGPOperatorAction) -> Command { Command(action) }
}

/// What a command does, next to what it is: the value a keyword's parse makes conforms,
/// so that no switch over every command is needed (HAProxy registers each keyword with
/// its handlers the same way). A command is either a `SettingCommand` or a `ControlCommand`.
protocol CommandBehaviour: Equatable, Sendable {
    /// The line, keyword first: what `text` and `write` give and `Command.parse` reads back.
    var line: [String] { get }
    /// What it needs done off the event loop first; none by default.
    var preparation: [Command.Preparation] { get }
    /// Its change to the configuration, as start-up and `penha check` apply `-O` and `-F`.
    func apply(to configuration: inout Configuration) throws
    /// Its change to the running balancer and its answer (the control socket, `-O` at run time).
    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome
}

extension CommandBehaviour {
    var preparation: [Command.Preparation] { [] }

    func isEqual(to other: any CommandBehaviour) -> Bool { (other as? Self) == self }
}

/// A command that changes the configuration: running it applies it, and the state reads
/// the changed configuration.
protocol SettingCommand: CommandBehaviour {
    /// The lines of this kind that recreate `configuration`'s part, for `write`.
    static func saved(from configuration: Configuration) -> [Command]
}

extension SettingCommand {
    /// A removal (`no vrrp`, `no acl`) saves nothing of its own: what is left is saved.
    static func saved(from configuration: Configuration) -> [Command] { [] }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        try apply(to: &runtime.configuration)
        return Runtime.Outcome()
    }
}

/// A question or an action for the control socket: it changes no configuration.
protocol ControlCommand: CommandBehaviour {}

extension ControlCommand {
    func apply(to configuration: inout Configuration) throws {
        throw ConfigurationError("'\(line.joined(separator: " "))' is a question or an action for the control socket, not a setting")
    }
}

/// A number a command needs: an integer, zero or more.
func nonNegativeNumber(_ text: String, for what: String) throws -> Int {
    guard let value = Int(text), value >= 0 else {
        throw ConfigurationError("\(what) needs a non-negative number, not '\(text)'")
    }
    return value
}
