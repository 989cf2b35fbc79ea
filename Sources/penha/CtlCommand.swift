import ArgumentParser
import Balancer
import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

/// `penha ctl [SOCKET|host:port] COMMAND...`: pen's penctl. Prints the answer; exits 1 when
/// penha cannot be reached or answers an error.
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Send one command to a running penha and print the answer.",
        helpNames: [.long]
    )

    @Argument(parsing: .captureForPassthrough,
              help: "[SOCKET|host:port|port] COMMAND...; the socket (a path with a '/' or a '.') defaults to \(Endpoint.defaultControlPath).")
    var words: [String] = []

    func run() throws {
        let names = words.first.map(Self.isControlAddress) ?? false
        let command = (names ? Array(words.dropFirst()) : words).joined(separator: " ")
        guard !command.isEmpty else { throw ConfigurationError("no command given; try: penha ctl servers") }
        let reply: Reply
        do {
            reply = try ControlClient.send(command, to: try ControlClient.address(names ? words.first : nil))
        } catch let failure as ControlClient.Failure {
            throw RuntimeFailure(description: failure.description)
        }
        for line in reply.wireLines { print(line) }
        if !reply.errors.isEmpty { throw ExitCode.failure }
    }

    /// Whether the first word names the control socket: a port, a host:port or a path with
    /// a '/' or a '.' (`a.sock`); a command word has none of these.
    static func isControlAddress(_ word: String) -> Bool {
        word.contains("/") || word.contains(":") || word.contains(".") || word.allSatisfy { $0.isASCII && $0.isNumber }
    }
}
