import NIOCore

/// The questions and actions of the control socket: each keyword's answer and effects,
/// together (the parses are in `CommandKeyword.table`). They change no configuration.
extension Command {
    /// Questions with no argument: `servers`, `status`, `mode`, `listen`, `pid`, `control`.
    public enum Query: String, CaseIterable, Sendable, ControlCommand {
        case servers, status, mode, listen, pid, control
        /// `status json`: the status model as one line of JSON, what `penha status --json` prints.
        case statusJSON = "status json"

        var line: [String] { rawValue.split(separator: " ").map(String.init) }

        var preparation: [Command.Preparation] { self == .status || self == .statusJSON ? [.vrrpReports] : [] }

        func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
            Runtime.Outcome(lines: try runtime.answer(self, facts: facts))
        }
    }
}

/// `recent [N]`: clients seen in the last N seconds (300 without N).
struct Recent: ControlCommand {
    let seconds: Int?

    var line: [String] { ["recent"] + (seconds.map { ["\($0)"] } ?? []) }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        let since = facts.now - .seconds(Int64(seconds ?? 300))
        return Runtime.Outcome(lines: runtime.state.clients.byRecentUse.filter { $0.entry.lastUsed >= since }.map { _, entry in
            "\(entry.key.clientText) connects \(entry.connections) sx \(entry.sent) rx \(entry.received)"
        })
    }
}

/// `connection N`: one connection's client, server and age.
struct ConnectionQuestion: ControlCommand {
    let number: Int

    var line: [String] { ["connection", "\(number)"] }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        let record = try runtime.connection(number)
        let age = Runtime.seconds(facts.now - record.since)
        return Runtime.Outcome(lines: ["connection \(number) client \(record.client) server \(Runtime.name(record.target)) age \(age)"])
    }
}

/// `close N`: closes connection N.
struct Close: ControlCommand {
    let number: Int

    var line: [String] { ["close", "\(number)"] }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        _ = try runtime.connection(number)
        return Runtime.Outcome(lines: ["closing connection \(number)"], effects: [.closeConnection(number)])
    }
}

/// `include FILE`: the commands of another file, which take its place as it is read.
struct Include: ControlCommand {
    let path: String

    var line: [String] { ["include", path] }

    var preparation: [Command.Preparation] { [.include(path: path)] }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        throw PenhaError.command("include is read by ConfigFile before execution")
    }
}

/// `write [FILE]`: the configuration as commands, to FILE or the `-F` file.
struct Write: ControlCommand {
    let path: String?

    var line: [String] { ["write"] + (path.map { [$0] } ?? []) }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        guard let path = path ?? facts.configFile else {
            throw PenhaError.command("write needs a file name: penha was started without -F")
        }
        return Runtime.Outcome(lines: ["wrote \(path)"],
                               effects: [.write(path: path, contents: runtime.configurationFile(listen: facts.listen))])
    }
}

/// `exit`: stops penha; only with `-X`.
struct Exit: ControlCommand {
    var line: [String] { ["exit"] }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        guard facts.exitEnabled else { throw PenhaError.command("exit is not enabled; start penha with -X") }
        return Runtime.Outcome(lines: ["exiting"], effects: [.exit])
    }
}

/// `reload`: what SIGHUP does, answered with its outcome (`systemctl reload` runs it).
struct Reload: ControlCommand {
    var line: [String] { ["reload"] }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        Runtime.Outcome(effects: [.reload])
    }
}

/// `bgp withdraw`, `bgp announce`: the operator's hold on the announcement (not saved by `write`).
extension BGPOperatorAction: ControlCommand {
    var line: [String] { ["bgp", rawValue] }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        guard runtime.configuration.bgp != nil else {
            throw PenhaError.command("'bgp \(rawValue)' needs a 'bgp table N vip ADDR' line first: nothing is announced")
        }
        runtime.state.bgpWithdrawnByOperator = self == .withdraw
        return Runtime.Outcome(lines: [self == .withdraw ? "bgp withdrawn by the operator until 'bgp announce'"
                                                         : "bgp announced again when ready and healthy"],
                               effects: [.updateBGP])
    }
}
