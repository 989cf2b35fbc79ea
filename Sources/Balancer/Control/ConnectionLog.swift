import BalancerCore
import Logging
import NIOCore

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
/// Lines are short and go to the page cache, so they are written on the event loop, as pen
/// does; opening the file (and resolving the daemon's host) is not (`LogFile`). A datagram
/// the socket cannot take at once is dropped and counted, never waited for.
final class ConnectionLog {
    /// nil: the log is off.
    var file: LogFile?
    /// Datagrams dropped since start (`-l HOST:PORT`).
    private(set) var dropped: UInt64 = 0
    private var dropWarnings = LogThrottle(interval: .seconds(10))

    /// Logs the TCP connection to `upstream` at the first bytes penha writes there (after
    /// `-H`'s rewriting: what the server receives), or as `-` when it closes without any.
    /// Must be called before the relay passes on the bytes read so far.
    func watch(_ upstream: Channel, client: SocketAddress?, logger: Logger) {
        guard file != nil else { return }
        let server = upstream.remoteAddress
        let recorder = RequestStartRecorder { [self] request in
            record(client: client, server: server, request: request, logger: logger)
        }
        try? upstream.pipeline.syncOperations.addHandler(recorder, position: .first)
    }

    /// Appends (or sends) the line of one connection; `request` as `PenLogLine.requestStart` makes it.
    func record(client: SocketAddress?, server: SocketAddress?, request: [UInt8], logger: Logger) {
        guard let file else { return }
        let line = PenLogLine(client: Self.logAddress(client), time: time(nil), server: Self.logAddress(server),
                              request: request)
        switch file.destination {
        case .file(let descriptor):
            _ = FileAccess.writeAll(line.fileLine, to: descriptor)
        case .daemon(let sender):
            guard !sender.send(line.datagram, wait: false) else { return }
            dropped += 1
            if let heldBack = dropWarnings.admit(now: .now()) {
                logger.warning("connection log: datagram to \(sender.target) dropped: \(SystemErrorText.describe(errno: errno))",
                               metadata: ["dropped_total": "\(dropped)", "held_back": "\(heldBack)"])
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

/// Passes every write on; hands the first one's start (`PenLogLine.requestStart`) to
/// `record`, or `-` when the channel goes inactive without a write.
private final class RequestStartRecorder: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private var record: (([UInt8]) -> Void)?

    init(record: @escaping ([UInt8]) -> Void) {
        self.record = record
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if let record {
            let buffer = unwrapOutboundIn(data)
            if buffer.readableBytes > 0 {
                self.record = nil
                record(PenLogLine.requestStart(buffer.readableBytesView.prefix(PenLogLine.requestLimit)))
            }
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let record {
            self.record = nil
            record(PenLogLine.noRequest)
        }
        context.fireChannelInactive()
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
        if path.contains(":"), !path.contains("/") {
            let (host, port) = try parseHostPort(path, what: "log address")
            destination = .daemon(try DatagramSender(host: host, port: port))
        } else {
            destination = .file(try FileAccess.openForAppending(path, action: "open log"))
        }
    }

    /// The file for `path`; nil for none.
    static func open(_ path: String?) throws -> LogFile? {
        try path.map { try LogFile(path: $0) }
    }

    deinit {
        if case .file(let descriptor) = destination { close(descriptor) }
    }
}
