import BalancerCore
import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `-l FILE`, `log FILE`: pen's log, one line per connection, `CLIENT UNIXTIME SERVER
/// REQUEST` (`PenLogLine`), which pen's mergelogs and `penha mergelogs` merge with the web
/// servers' logs. `-l HOST:PORT` sends the same as `+ CLIENT SERVER REQUEST` datagrams to a
/// log daemon (`penha logd`, pen's penlogd). A TCP connection is logged when its first bytes
/// go to the server, so the time is the request's, as in pen; one that never sent anything
/// is logged when it ends, with `-` for its request, and so is a UDP flow. pen logs every
/// read from the client (the bodies of uploads too); penha logs the connection once, which
/// costs one write per connection, not one per read.
///
/// Lines are short and go to the page cache, so they are written on the engine's threads, as
/// pen does; opening the file (and resolving the daemon's host) is not (`LogFile`). A datagram
/// the socket cannot take at once is dropped and counted, never waited for.
final class ConnectionLog: Sendable {
    private struct State {
        var file: LogFile?
        /// Datagrams dropped since start (`-l HOST:PORT`).
        var dropped: UInt64 = 0
        var dropWarnings = LogThrottle(interval: .seconds(10))
    }

    /// Written from the engine's threads and the event loop (UDP), so behind a lock; one short
    /// write under it per connection.
    private let state = Mutex(State())
    /// Whether `file` is set, asked once per connection: read without the lock.
    private let on = Atomic(false)

    /// nil: the log is off.
    var file: LogFile? {
        get { state.withLock { $0.file } }
        set {
            state.withLock { $0.file = newValue }
            on.store(newValue != nil, ordering: .relaxed)
        }
    }

    var isOn: Bool { on.load(ordering: .relaxed) }

    /// Appends (or sends) the line of one connection; `request` as `PenLogLine.requestStart`
    /// makes it, the addresses as `logAddress` writes them.
    func record(client: String, server: String, request: [UInt8], logger: Logger) {
        state.withLock { state in
            guard let file = state.file else { return }
            let line = PenLogLine(client: client, time: time(nil), server: server, request: request)
            switch file.destination {
            case .file(let descriptor):
                _ = FileAccess.writeAll(line.fileLine, to: descriptor)
            case .daemon(let sender):
                guard !sender.send(line.datagram, wait: false) else { return }
                state.dropped += 1
                if let heldBack = state.dropWarnings.admit(now: .now()) {
                    logger.warning("connection log: datagram to \(sender.target) dropped: \(SystemErrorText.describe(errno: errno))",
                                   metadata: ["dropped_total": "\(state.dropped)", "held_back": "\(heldBack)"])
                }
            }
        }
    }

    /// An address as pen's log writes it: without the port.
    static func logAddress(_ address: SocketAddress?) -> String {
        switch address {
        case .v4, .v6: return address?.ipAddress ?? "?"
        case .unixDomainSocket: return "local"
        case nil: return "?"
        }
    }
}

/// Where the connection log goes, open; closed when the last reference goes. Opened on the
/// thread pool (or at start) and handed to the event loop, so that a slow or odd path (or
/// a slow name server) never stalls it; only a regular file is taken (`log /dev/full` or a
/// FIFO is refused when it is given).
final class LogFile: Sendable {
    enum Destination: Sendable {
        case file(Int32)
        case daemon(DatagramSender)
    }

    let destination: Destination

    /// `path` is a file, or pen's `HOST:PORT` of a log daemon: a value with a `:` and no `/`
    /// (pen takes any value with a `:` that does not start with `/`; penha keeps `./a:b` a file).
    init(path: String) throws {
        if Self.namesDaemon(path) {
            let (host, port) = try parseHostPort(path, what: "log address")
            destination = .daemon(try DatagramSender(host: host, port: port))
        } else {
            destination = .file(try FileAccess.openForAppending(path, action: Self.fileAction))
        }
    }

    /// Whether `init` would succeed now, creating no file: for `penha check`. A daemon's
    /// host is resolved and its socket made and closed; nothing is sent.
    static func check(_ path: String) throws {
        if Self.namesDaemon(path) {
            _ = try LogFile(path: path)
        } else {
            try FileAccess.checkAppendable(path, action: fileAction)
        }
    }

    private static let fileAction = "open log"

    private static func namesDaemon(_ path: String) -> Bool { path.contains(":") && !path.contains("/") }

    /// The file for `path`; nil for none.
    static func open(_ path: String?) throws -> LogFile? {
        try path.map { try LogFile(path: $0) }
    }

    deinit {
        if case .file(let descriptor) = destination { close(descriptor) }
    }
}
