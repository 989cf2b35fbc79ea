import Balancer
import BalancerCore
import PenhaCommandLine

#if canImport(Glibc)
import Glibc
#endif

/// `penha logpipe HOST PORT [MY_IP]`: pen's penlog. A web server's piped log program
/// (Apache: `CustomLog "|penha logpipe loghost 10000" common`): each access-log line on
/// stdin goes to the log daemon as one datagram. The daemon knows the web server by the
/// datagram's source address, so MY_IP binds it to the address penha connects to. Lines
/// over `PenLogLine.maxLineBytes` are skipped and counted; a datagram the daemon's host
/// refuses is counted too, and the next line is still sent: the web server's logging never
/// stops because the log host is away.
struct LogpipeCommand: Subcommand {
    var host = ""
    var port = 0
    var localAddress: String?

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "logpipe", abstract: "Send access-log lines from stdin to penha logd or penlogd (pen's penlog).",
            defaults: Self(),
            operands: [.required("host", help: "The log daemon's host.", \.host),
                       .required("port", help: "The log daemon's UDP port.", \.port),
                       .optional("my_ip", help: "The local address to send from: the web server's address as penha knows it.",
                                 \.localAddress)])
    }

    func validate() throws {
        _ = try boundedNumber(port, 1...65535, for: "PORT")
    }

    func run() throws {
        let sender: DatagramSender
        do {
            sender = try DatagramSender(host: host, port: port, from: localAddress)
        } catch {
            throw RuntimeFailure(description: "\(error)")
        }
        let input = LineInput(descriptor: 0)
        var overlong = 0
        var unsent = 0
        while let line = input.read() {
            guard case .line(let bytes) = line else {
                overlong += 1
                continue
            }
            if !sender.send(bytes + [UInt8(ascii: "\n")], wait: true) { unsent += 1 }
        }
        if overlong > 0 || unsent > 0 {
            writeToStandardError("penha logpipe: \(overlong) lines over \(PenLogLine.maxLineBytes) bytes skipped, \(unsent) not sent")
        }
    }
}
