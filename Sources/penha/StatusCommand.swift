import Balancer
import BalancerCore
import PenhaCommandLine
import Glibc
import VRRP
import VRRPCore

/// `penha status [-C SOCKET] [--json]`: what a running penha is doing, for a person or, with
/// `--json`, for scripts. Exits 0 when penha answered, 1 when it did not.
struct StatusCommand: Subcommand {
    var control: String?
    var json = false

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "status", abstract: "Show a running penha's role, connections and servers.", defaults: Self(),
            options: [.value("-C", valueName: "socket", help: "Control socket or host:port (default \(Endpoint.defaultControlPath)).",
                             \.control),
                      .flag("--json", help: "Print one JSON object.", \.json)])
    }

    func run() throws {
        let address = try ControlClient.address(control)
        // penha answers `status json` from its own model; a penha from before that command
        // (met during an upgrade) refuses it, and its `status` lines are encoded here instead.
        if json {
            let reply = try ask("status json", address)
            if reply.errors.isEmpty, let line = reply.lines.first {
                print(line)
                return
            }
        }
        let reply = try ask("status", address)
        if let error = reply.errors.first {
            throw RuntimeFailure(description: "penha answered: error: \(error)")
        }
        let status: StatusReport
        do {
            status = try StatusReport(lines: reply.lines)
        } catch let error as StatusReport.FormatError {
            throw RuntimeFailure(description: "penha's status answer cannot be read: \(error)")
        }
        print(json ? try JSONText.encode(status) : status.summary)
    }

    private func ask(_ command: String, _ address: Endpoint) throws -> Reply {
        do {
            return try ControlClient.send(command, to: address)
        } catch let failure as ControlClient.Failure {
            throw RuntimeFailure(description: failure.description)
        }
    }
}

/// How `penha status` shows the report to a person.
extension StatusReport {
    /// Fits an 80-column terminal.
    var summary: String {
        var lines = ["penha \(role), listening on \(listen), up \(Self.duration(uptimeSeconds))",
                     "connections: \(connections) now, \(totalConnections) total"
                         + (refusedClients > 0 ? ", \(refusedClients) refused by client_acl" : "")]
        if let tls = tlsHandshakes {
            lines.append("tls handshakes: \(tls.completed) completed, \(tls.failed) failed")
        }
        if let draining {
            lines.append("stopping: \(draining.text)")
        }
        lines += ["", Self.row(["#", "server", "state", "conn", "total", "sent", "received"])]
        for server in servers {
            let address = Endpoint.describe(host: server.address, port: server.port)
            let state = server.state == .blacklisted ? "blacklisted \(server.blacklistSecondsLeft)s" : server.state.rawValue
            lines.append(Self.row(["\(server.index)", address, state, "\(server.connections)", "\(server.totalConnections)",
                                   Self.bytes(server.sent), Self.bytes(server.received)]))
            if server.check != .disabled {
                let streak = server.checkFailures > 0 ? "\(server.checkFailures) failed" : "\(server.checkSuccesses) good"
                lines.append("    check \(server.check.rawValue): \(server.checkResult ?? "not checked yet"), \(streak) in a row"
                    + (server.checkChangedSecondsAgo.map { ", changed \(Self.duration($0)) ago" } ?? ""))
            }
        }
        for instance in vrrp { lines += [""] + Self.describe(instance) }
        if let sync { lines += [""] + Self.describe(sync) }
        if let bgp { lines += ["", bgp.text] + (bgp.error.map { ["  last route change failed: \($0)"] } ?? []) }
        return lines.joined(separator: "\n")
    }

    private static func describe(_ instance: VRRPInstance) -> [String] {
        var lines = ["VRRP vrid \(instance.vrid) on \(instance.interface): \(instance.state.rawValue), priority \(instance.priority)"
            + (instance.effectivePriority != instance.priority ? " (effective \(instance.effectivePriority))" : "")
            + ", v\(instance.version), advert \(instance.advertMilliseconds) ms, master \(instance.master ?? "unknown")"]
        for address in instance.virtualAddresses {
            lines.append("  vip \(address.address): \(address.onInterface ? "on \(instance.interface)" : "not on the interface")")
        }
        if let ago = instance.lastChangeSecondsAgo {
            lines.append("  last change \(Self.duration(ago)) ago: \(instance.lastChangeReason)")
        }
        let drops = VRRPDropReason.allCases.compactMap { reason -> String? in
            guard let count = instance.dropped[reason], count > 0 else { return nil }
            return "\(count) \(reason.rawValue)"
        } + (instance.malformed > 0 ? ["\(instance.malformed) malformed"] : [])
        lines.append("  adverts: \(instance.sent) sent, \(instance.received) received"
            + (drops.isEmpty ? "" : "; dropped: " + drops.joined(separator: ", ")))
        return lines
    }

    private static func describe(_ sync: Sync) -> [String] {
        ["sync on \(sync.listen): \(sync.sending ? "sending" : "receiving"), \(sync.rejected) rejected"]
            + sync.peers.map { peer in
                "  peer \(peer.address): \(peer.connected ? "connected" : "not connected"), \(peer.sent) sent, "
                    + "\(peer.received) received, \(peer.fullCopies) full copies"
                    + (peer.lastFullCopySecondsAgo.map { " (last \(Self.duration($0)) ago)" } ?? "")
                    + (peer.dropped > 0 ? ", \(peer.dropped) dropped" : "")
            }
    }

    private static let widths = [3, 22, 16, 6, 8, 9, 9]

    private static func row(_ cells: [String]) -> String {
        zip(cells, widths).enumerated().map { column, pair in
            let (cell, width) = pair
            let padding = String(repeating: " ", count: max(0, width - cell.count))
            // Text columns left-aligned, numbers right-aligned.
            return (1...2).contains(column) ? cell + padding : padding + cell
        }.joined(separator: " ")
    }

    private static func bytes(_ count: UInt64) -> String {
        let units = ["B", "K", "M", "G", "T", "P"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count)B" : oneDecimal(value) + units[unit]
    }

    /// printf's `%.1f`, which is what Foundation's `String(format:)` wrote: same digits, same rounding.
    static func oneDecimal(_ value: Double) -> String {
        // At most 16384.0 (2⁶⁴ B in P): a few characters.
        var text = [CChar](repeating: 0, count: 32)
        let length = withVaList([value]) { vsnprintf(&text, text.count, "%.1f", $0) }
        return String(decoding: text.prefix(max(0, Int(length))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `01h02m03s`, `4d 01h02m03s`.
    static func duration(_ seconds: Int) -> String {
        let (days, hours, minutes) = (seconds / 86400, seconds / 3600 % 24, seconds / 60 % 60)
        let clock = "\(twoDigits(hours))h\(twoDigits(minutes))m\(twoDigits(seconds % 60))s"
        return days > 0 ? "\(days)d \(clock)" : clock
    }

    /// printf's `%02d`.
    private static func twoDigits(_ number: Int) -> String {
        let digits = String(number)
        return digits.count < 2 ? "0" + digits : digits
    }
}
