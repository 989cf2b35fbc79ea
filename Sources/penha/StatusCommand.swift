import ArgumentParser
import Balancer
import Foundation
import VRRP

/// `penha status [-C SOCKET] [--json]`: what a running penha is doing, for a person or, with
/// `--json`, for scripts. Exits 0 when penha answered, 1 when it did not.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a running penha's role, connections and servers.",
        helpNames: [.long]
    )

    @Option(name: .customShort("C"), help: "Control socket or host:port (default \(ControlAddress.defaultPath)).")
    var control: String?
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let lines: [String]
        do {
            lines = try ControlClient.send("status", to: try ControlClient.address(control))
        } catch let failure as ControlClient.Failure {
            throw RuntimeFailure(description: failure.description)
        }
        if let error = lines.first(where: { $0.hasPrefix("error: ") }) {
            throw RuntimeFailure(description: "penha answered: \(error)")
        }
        let status = Status(lines: lines)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
        } else {
            print(status.summary)
        }
    }
}

/// The answer to the `status` command: lines of name/value word pairs (`Runtime` writes them).
struct Status: Encodable {
    struct Server: Encodable {
        var index = 0
        var address = ""
        var port = 0
        var state = ""
        var blacklistSecondsLeft = 0
        var connections = 0
        var totalConnections: UInt64 = 0
        var maxConnections = 0
        var sent: UInt64 = 0
        var received: UInt64 = 0
    }

    struct VRRPInstance: Encodable {
        struct VirtualAddress: Encodable {
            var address: String
            var onInterface: Bool
        }

        var vrid = 0
        var state = "?"
        var interface = "?"
        var version = 0
        var priority = 0
        var effectivePriority = 0
        var advertMilliseconds = 0
        /// The current master's address, nil when unknown.
        var master: String?
        /// Seconds since 1970; 0 before the first transition.
        var lastChange = 0
        var lastChangeReason = ""
        var sent: UInt64 = 0
        var received: UInt64 = 0
        var malformed: UInt64 = 0
        /// Received adverts dropped, by reason (RFC 5798 section 7.1).
        var dropped: [String: UInt64] = [:]
        var virtualAddresses: [VirtualAddress] = []
    }

    var role = "?"
    var listen = "?"
    var uptimeSeconds = 0
    var connections = 0
    var totalConnections: UInt64 = 0
    /// Clients refused by client_acl.
    var refusedClients: UInt64 = 0
    /// TLS handshakes completed and failed; nil without TLS.
    var tlsHandshakes: TLSHandshakes?

    struct TLSHandshakes: Encodable {
        var completed: UInt64
        var failed: UInt64
    }
    var servers: [Server] = []
    var vrrp: [VRRPInstance] = []

    init(lines: [String]) {
        for line in lines {
            let words = line.split(separator: " ").map(String.init)
            guard let name = words.first, words.count >= 2 else { continue }
            // Pairs after the first word: "server 0 address A port P ..." → ["address": "A", ...].
            var pairs: [String: String] = [:]
            for index in stride(from: 2, to: words.count - 1, by: 2) { pairs[words[index]] = words[index + 1] }
            switch name {
            case "role": role = words[1]
            case "listen": listen = words[1]
            case "uptime": uptimeSeconds = Int(words[1]) ?? 0
            case "connections":
                connections = Int(words[1]) ?? 0
                totalConnections = pairs["total"].flatMap { UInt64($0) } ?? 0
                refusedClients = pairs["refused"].flatMap { UInt64($0) } ?? 0
            case "tls" where words.count == 5:
                // "tls handshakes N failed M"
                tlsHandshakes = TLSHandshakes(completed: UInt64(words[2]) ?? 0, failed: UInt64(words[4]) ?? 0)
            case "server":
                servers.append(Server(
                    index: Int(words[1]) ?? servers.count, address: pairs["address"] ?? "?",
                    port: pairs["port"].flatMap { Int($0) } ?? 0, state: pairs["state"] ?? "?",
                    blacklistSecondsLeft: pairs["blacklist_left"].flatMap { Int($0) } ?? 0,
                    connections: pairs["connections"].flatMap { Int($0) } ?? 0,
                    totalConnections: pairs["total"].flatMap { UInt64($0) } ?? 0,
                    maxConnections: pairs["max"].flatMap { Int($0) } ?? 0,
                    sent: pairs["sent"].flatMap { UInt64($0) } ?? 0,
                    received: pairs["received"].flatMap { UInt64($0) } ?? 0))
            case "vrrp":
                var instance = VRRPInstance(vrid: Int(words[1]) ?? 0)
                instance.state = pairs["state"] ?? "?"
                instance.interface = pairs["interface"] ?? "?"
                instance.version = pairs["version"].flatMap { Int($0) } ?? 0
                instance.priority = pairs["priority"].flatMap { Int($0) } ?? 0
                instance.effectivePriority = pairs["effective"].flatMap { Int($0) } ?? 0
                instance.advertMilliseconds = pairs["advert_ms"].flatMap { Int($0) } ?? 0
                instance.master = pairs["master"].flatMap { $0 == "-" ? nil : $0 }
                instance.lastChange = pairs["last_change"].flatMap { Int($0) } ?? 0
                instance.sent = pairs["sent"].flatMap { UInt64($0) } ?? 0
                instance.received = pairs["received"].flatMap { UInt64($0) } ?? 0
                instance.malformed = pairs["malformed"].flatMap { UInt64($0) } ?? 0
                for (name, value) in pairs where name.hasPrefix("drop_") {
                    instance.dropped[String(name.dropFirst(5))] = UInt64(value) ?? 0
                }
                vrrp.append(instance)
            case "vip":
                let address = VRRPInstance.VirtualAddress(address: pairs["address"] ?? "?", onInterface: pairs["on_interface"] == "yes")
                vrrp.indices.last { vrrp[$0].vrid == Int(words[1]) }.map { vrrp[$0].virtualAddresses.append(address) }
            case "vrrp_reason":
                let reason = words.dropFirst(2).joined(separator: " ")
                vrrp.indices.last { vrrp[$0].vrid == Int(words[1]) }.map { vrrp[$0].lastChangeReason = reason }
            default: continue
            }
        }
    }

    /// Fits an 80-column terminal.
    var summary: String {
        var lines = ["penha \(role), listening on \(listen), up \(Self.duration(uptimeSeconds))",
                     "connections: \(connections) now, \(totalConnections) total"
                         + (refusedClients > 0 ? ", \(refusedClients) refused by client_acl" : "")]
        if let tls = tlsHandshakes {
            lines.append("tls handshakes: \(tls.completed) completed, \(tls.failed) failed")
        }
        lines += ["", Self.row(["#", "server", "state", "conn", "total", "sent", "received"])]
        for server in servers {
            let address = server.address.contains(":") ? "[\(server.address)]:\(server.port)" : "\(server.address):\(server.port)"
            let state = server.state == "blacklisted" ? "blacklisted \(server.blacklistSecondsLeft)s" : server.state
            lines.append(Self.row(["\(server.index)", address, state, "\(server.connections)", "\(server.totalConnections)",
                                   Self.bytes(server.sent), Self.bytes(server.received)]))
        }
        for instance in vrrp { lines += [""] + Self.describe(instance) }
        return lines.joined(separator: "\n")
    }

    private static func describe(_ instance: VRRPInstance) -> [String] {
        var lines = ["VRRP vrid \(instance.vrid) on \(instance.interface): \(instance.state), priority \(instance.priority)"
            + (instance.effectivePriority != instance.priority ? " (effective \(instance.effectivePriority))" : "")
            + ", v\(instance.version), advert \(instance.advertMilliseconds) ms, master \(instance.master ?? "unknown")"]
        for address in instance.virtualAddresses {
            lines.append("  vip \(address.address): \(address.onInterface ? "on \(instance.interface)" : "not on the interface")")
        }
        if instance.lastChange > 0 {
            let ago = max(0, Int(Date().timeIntervalSince1970) - instance.lastChange)
            lines.append("  last change \(Self.duration(ago)) ago: \(instance.lastChangeReason)")
        }
        let drops = VRRPDropReason.allCases.compactMap { reason -> String? in
            guard let count = instance.dropped["\(reason)"], count > 0 else { return nil }
            return "\(count) \(reason.rawValue)"
        } + (instance.malformed > 0 ? ["\(instance.malformed) malformed"] : [])
        lines.append("  adverts: \(instance.sent) sent, \(instance.received) received"
            + (drops.isEmpty ? "" : "; dropped: " + drops.joined(separator: ", ")))
        return lines
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
        return unit == 0 ? "\(count)B" : String(format: "%.1f", value) + units[unit]
    }

    private static func duration(_ seconds: Int) -> String {
        let (days, hours, minutes) = (seconds / 86400, seconds / 3600 % 24, seconds / 60 % 60)
        let clock = String(format: "%02dh%02dm%02ds", hours, minutes, seconds % 60)
        return days > 0 ? "\(days)d \(clock)" : clock
    }
}
