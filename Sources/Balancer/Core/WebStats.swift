import NIOCore

/// pen's HTML status report (`-w`, `web_stats`): the servers and the clients the table
/// remembers, as a page a web server can serve as it is.
extension Runtime {
    public func webStats(facts: Facts) -> String {
        let servers = state.configuredServers.enumerated().map { index, pair in
            let (spec, server) = pair
            return Self.row(["\(index)", spec.host, "\(spec.port)", server.state(spec, now: facts.now).rawValue, "\(server.connections)",
                             "\(spec.maxConnections)", "\(spec.hardLimit)", "\(server.sent)", "\(server.received)",
                             "\(spec.weight)", "\(spec.priority)"])
        }
        let clients = state.clients.byRecentUse.map { slot, entry in
            Self.row(["\(slot)", entry.key.clientText, "\((facts.now - entry.lastUsed).nanoseconds / 1_000_000_000)",
                      entry.server.map { "\($0)" } ?? "-", "\(entry.connections)", "\(entry.sent)", "\(entry.received)"])
        }
        return """
            <html>
            <head><title>penha status</title></head>
            <body>
            <h1>penha status</h1>
            <p>\(Self.escape(facts.role)), listening on \(Self.escape(facts.listen)), \(state.servers.count) servers, \
            \(state.activeConnections) connections now, \(state.totalConnections) in all</p>
            <table>
            \(Self.row(["server", "host", "port", "state", "connections", "max soft", "max hard", "sent", "received", "weight", "prio"], cell: "th"))
            \(servers.joined(separator: "\n"))
            </table>
            <h2>Clients</h2>
            <p>Client table: \(state.clients.count) of \(state.clients.capacity) slots used</p>
            <table>
            \(Self.row(["slot", "address", "age (s)", "last server", "connects", "sent", "received"], cell: "th"))
            \(clients.joined(separator: "\n"))
            </table>
            </body>
            </html>

            """
    }

    private static func row(_ cells: [String], cell: String = "td") -> String {
        "<tr>" + cells.map { "<\(cell)>\(escape($0))</\(cell)>" }.joined() + "</tr>"
    }

    private static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "&": escaped += "&amp;"
            case "\"": escaped += "&quot;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
