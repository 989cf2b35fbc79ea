import Balancer
import BalancerCore
import PenhaCommandLine

#if canImport(Glibc)
import Glibc
#endif

/// `penha mergelogs -p PENLOG [-j JITTER] [-t OFFSET] SERVER:LOGFILE ...`: pen's mergelogs.
/// Merges the web servers' access logs (Apache common or combined) with pen's (or penha's)
/// `-l` log, writing each web server's lines to stdout with the real client in place of
/// the balancer's address (`LogMerge` has the rules). What could not be matched or read is
/// counted on stderr.
struct MergelogsCommand: Subcommand {
    var penLog = ""
    var jitter = LogMerge.defaultJitter
    var offset = 0
    var serverLogs: [String] = []

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "mergelogs", abstract: "Merge web server access logs with penha's -l log (pen's mergelogs).", defaults: Self(),
            options: [.value("-p", valueName: "penlog", help: "The -l log of penha or pen.", \.penLog),
                      .value("-j", valueName: "jitter", help: "Largest time difference, in seconds, of a line and its pen line.",
                             \.jitter),
                      .value("-t", valueName: "offset",
                             help: "Seconds by which pen's clock is ahead of the web servers' (subtracted from its times).",
                             \.offset)],
            operands: [.list("server:logfile", help: "A web server as pen's log names it (its address), a colon, its access "
                                 + "log; [v6]:file for IPv6.", atLeastOne: true, \.serverLogs)])
    }

    func validate() throws {
        guard !serverLogs.isEmpty else { throw ConfigurationError("no SERVER:LOGFILE given") }
        _ = try boundedNumber(jitter, LogMerge.jitterRange, for: "-j")
        _ = try boundedNumber(offset, LogMerge.offsetRange, for: "-t")
        for argument in serverLogs { _ = try Self.split(argument) }
    }

    func run() throws {
        let named = try serverLogs.map(Self.split)
        let inputs: [LineInput]
        let penInput: LineInput
        do {
            inputs = try named.map { try LineInput(path: $0.file) }
            penInput = try LineInput(path: penLog)
        } catch let error as PenhaError where error.kind == .io {
            throw RuntimeFailure(description: "\(error)")
        }
        var merge = LogMerge(servers: named.map(\.server), serverLogs: inputs.map { input in { input.read() } },
                             penLog: { penInput.read() }, jitter: jitter, offset: offset)
        var output = BufferedOutput(descriptor: 1)
        var lines = 0
        while let line = merge.next() {
            output.write(line)
            lines += 1
        }
        output.flush()
        let counts = merge.counts
        let dropped = counts.droppedPenLines == 0 ? ""
            : "; \(counts.droppedPenLines) pen lines dropped, more than \(LogMerge.windowLimit) within the jitter"
        writeToStandardError("penha mergelogs: \(lines) lines, \(counts.matched) with their client, \(counts.unmatched) unmatched "
              + "(the server as client); skipped: \(counts.skippedServerLines) web server lines, "
              + "\(counts.skippedPenLines) pen lines\(dropped)")
    }

    /// `SERVER:LOGFILE`, split at the first colon as pen does; `[v6]:LOGFILE` for IPv6.
    static func split(_ argument: String) throws -> (server: String, file: String) {
        let server: Substring
        let rest: Substring
        if argument.hasPrefix("["), let close = argument.firstIndex(of: "]") {
            server = argument[argument.index(after: argument.startIndex)..<close]
            rest = argument[argument.index(after: close)...]
        } else if let colon = argument.firstIndex(of: ":") {
            server = argument[..<colon]
            rest = argument[colon...]
        } else {
            throw ConfigurationError("bad server log '\(argument)': expected SERVER:LOGFILE")
        }
        guard !server.isEmpty, rest.hasPrefix(":"), rest.count > 1 else {
            throw ConfigurationError("bad server log '\(argument)': expected SERVER:LOGFILE")
        }
        return (String(server), String(rest.dropFirst()))
    }
}
