import Balancer
import BalancerCore
import PenhaCommandLine

#if canImport(Glibc)
import Glibc
#endif

/// `penha ctl [-C SOCKET | SOCKET|host:port] COMMAND...`: pen's penctl. Prints the answer;
/// exits 1 when penha cannot be reached or answers an error.
struct CtlCommand: Subcommand {
    var control: String?
    var words: [String] = []

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "ctl", abstract: "Send one command to a running penha and print the answer.", defaults: Self(),
            options: [.value("-C", valueName: "socket", help: "Control socket or host:port (default \(Endpoint.defaultControlPath)).",
                             \.control)],
            operands: [.passthrough("command", help: "[SOCKET|host:port|port] COMMAND...; the socket (a path with a '/' or a "
                                        + "'.') may come first in place of -C.", \.words)])
    }

    func run() throws {
        let names = control == nil && (words.first.map(Self.isControlAddress) ?? false)
        let command = (names ? Array(words.dropFirst()) : words).joined(separator: " ")
        guard !command.isEmpty else { throw ConfigurationError("no command given; try: penha ctl servers") }
        let reply: Reply
        do {
            reply = try ControlClient.send(command, to: try ControlClient.address(names ? words.first : control))
        } catch let failure as ControlClient.Failure {
            throw RuntimeFailure(description: failure.description)
        }
        for line in reply.wireLines { print(line) }
        if !reply.errors.isEmpty { throw ExitStatus(code: 1) }
    }

    /// Whether the first word names the control socket: a port, a host:port or a path with
    /// a '/' or a '.' (`a.sock`); a command word has none of these.
    static func isControlAddress(_ word: String) -> Bool {
        word.contains("/") || word.contains(":") || word.contains(".") || word.allSatisfy { $0.isASCII && $0.isNumber }
    }
}
