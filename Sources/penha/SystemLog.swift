import Balancer
import BalancerCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Log lines where an operator finds them without a terminal. A detached penha sends them
/// to syslog as pen does (ident `penha`, facility daemon, RFC 3164's local format over
/// /dev/log); under systemd's journal, stderr lines start with the syslog priority (`<3>`,
/// sd-daemon(3)) so that `journalctl -p` filters them.
struct SystemLogHandler: LogHandler {
    enum Output: Sendable {
        case syslog(UnixDatagramSender)
        case journal
    }

    /// Where syslog listens; `PENHA_SYSLOG_SOCKET` replaces it for tests, which cannot own /dev/log.
    static let syslogSocketVariable = "PENHA_SYSLOG_SOCKET"
    static let defaultSyslogSocket = "/dev/log"
    /// LOG_DAEMON, RFC 3164 4.1.1: facility 3.
    static let daemonFacility = 3

    let output: Output
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = metadata.merging(event.metadata ?? [:]) { $1 }
        let text = ([event.message.description] + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
            .joined(separator: " ")
        let severity = Self.severity(event.level)
        switch output {
        case .syslog(let socket):
            socket.send("<\(Self.daemonFacility * 8 + severity)>\(Self.timestamp()) penha[\(getpid())]: \(text)")
        case .journal:
            writeToStandardError("<\(severity)>\(text)")
        }
    }

    /// RFC 5424 6.2.1's severities, which syslog(3) and the journal share.
    static func severity(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: return 2
        case .error: return 3
        case .warning: return 4
        case .notice: return 5
        case .info: return 6
        case .debug, .trace: return 7
        }
    }

    /// RFC 3164 4.1.2's TIMESTAMP, `Mmm dd hh:mm:ss` in local time, as syslog(3) writes it.
    private static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%b %e %H:%M:%S", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether stderr is the stream systemd's `$JOURNAL_STREAM` (`DEVICE:INODE`) names, and
    /// not a descriptor that replaced it since (a redirect inherits the variable).
    static func stderrIsJournal(_ environment: [String: String]) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        var status = stat()
        guard fstat(2, &status) == 0 else { return false }
        return value == "\(status.st_dev):\(status.st_ino)"
    }
}

/// Every log line's message and metadata, escaped (`LogText`) before the handlers write
/// them: the one place where text from the wire (a peer's words, a path or name a command
/// gave) is made harmless for a terminal or a log reader, whatever the line.
struct EscapingLogHandler: LogHandler {
    var handler: any LogHandler

    var logLevel: Logger.Level {
        get { handler.logLevel }
        set { handler.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { handler.metadata }
        set { handler.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { handler.metadataProvider }
        set { handler.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { handler[metadataKey: key] }
        set { handler[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = "\(LogText.escaped(event.message.description))"
        event.metadata = event.metadata?.mapValues(Self.escaped)
        handler.log(event: event)
    }

    private static func escaped(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): return .string(LogText.escaped(text))
        case .stringConvertible(let text): return .string(LogText.escaped(text.description))
        case .array(let values): return .array(values.map(escaped))
        case .dictionary(let values): return .dictionary(values.mapValues(escaped))
        }
    }
}

/// The logger: stderr in the foreground (with priorities under the journal); in a detached
/// penha syslog too, where the lines go once its stderr is closed.
func makeLogger(debugLevel: Int) -> Logger {
    let environment = Environment.dictionary
    let syslog = Daemon.isDetached
        ? try? UnixDatagramSender(path: environment[SystemLogHandler.syslogSocketVariable] ?? SystemLogHandler.defaultSyslogSocket)
        : nil
    let journal = SystemLogHandler.stderrIsJournal(environment)
    LoggingSystem.bootstrap { label in
        let standardError: LogHandler = journal ? SystemLogHandler(output: .journal) : StreamLogHandler.standardError(label: label)
        guard let syslog else { return EscapingLogHandler(handler: standardError) }
        return EscapingLogHandler(handler: MultiplexLogHandler([standardError, SystemLogHandler(output: .syslog(syslog))]))
    }
    var logger = Logger(label: "penha")
    logger.logLevel = BalancerService.logLevel(debug: debugLevel)
    return logger
}
