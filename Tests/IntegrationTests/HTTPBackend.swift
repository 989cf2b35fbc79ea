import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An HTTP backend on loopback: answers each request with `status` and its name as the body,
/// then closes. Keeps the head of every request (to see what a health check sends) and an
/// access log in Apache's common format, written here by the test (not by penha's code):
/// `PEER - - [dd/Mon/yyyy:HH:MM:SS +0000] "REQUEST LINE" STATUS LENGTH`, the request line
/// escaped as Apache escapes it.
final class HTTPBackend {
    let name: String
    let host: String
    let port: Int
    private let channel: Channel
    private let shared: Shared

    final class Shared: Sendable {
        private struct Record {
            var status: Int
            var heads: [String] = []
            var entries: [String] = []
        }

        private let state: Mutex<Record>
        init(status: Int) { state = Mutex(Record(status: status)) }

        var status: Int {
            get { state.withLock { $0.status } }
            set { state.withLock { $0.status = newValue } }
        }
        var requests: [String] { state.withLock { $0.heads } }
        var lines: [String] { state.withLock { $0.entries } }

        func record(head: String, logLine: String) {
            state.withLock {
                $0.heads.append(head)
                $0.entries.append(logLine)
            }
        }
    }

    init(_ name: String, host: String = "127.0.0.1", status: Int = 200) throws {
        self.name = name
        self.host = host
        let shared = Shared(status: status)
        self.shared = shared
        channel = try ServerBootstrap(group: Backend.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTPBackendHandler(body: name, shared: shared))
                }
            }
            .bind(host: host, port: 0).wait()
        port = channel.localAddress!.port!
    }

    /// The status the next answers carry.
    var status: Int {
        get { shared.status }
        set { shared.status = newValue }
    }

    /// The head of every request received, in order.
    var requests: [String] { shared.requests }

    /// `host:port`, as penha's server argument.
    var address: String { "\(host):\(port)" }
    var accessLines: [String] { shared.lines }

    /// Writes the access log so far to `path`, one line each.
    func writeLog(to path: String, extra: [String] = []) throws {
        try (accessLines + extra).map { $0 + "\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
    }

    func stop() { try? channel.close().wait() }
    deinit { stop() }

    /// Apache's escaping of a logged field (`ap_escape_logitem`, server/util.c): `"` and `\`
    /// after a backslash, `\b \t \n \v \r`, any other byte outside printable ASCII as `\xhh`.
    static func apacheEscaped(_ bytes: some Sequence<UInt8>) -> String {
        var text = ""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): text += "\\" + String(UnicodeScalar(byte))
            case 0x08: text += "\\b"
            case 0x09: text += "\\t"
            case 0x0A: text += "\\n"
            case 0x0B: text += "\\v"
            case 0x0D: text += "\\r"
            case 0x20...0x7E: text.append(Character(UnicodeScalar(byte)))
            default: text += "\\x" + (byte < 0x10 ? "0" : "") + String(byte, radix: 16)
            }
        }
        return text
    }

    /// Apache's `%t` for now, in UTC.
    static func apacheTime(_ time: time_t = time(nil)) -> String {
        var seconds = time
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%d/%b/%Y:%H:%M:%S +0000", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

private final class HTTPBackendHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let body: String
    private let shared: HTTPBackend.Shared
    private var head: [UInt8] = []

    init(body: String, shared: HTTPBackend.Shared) {
        self.body = body
        self.shared = shared
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        head += unwrapInboundIn(data).readableBytesView
        // A head that never ends is answered once it is long enough: a bound, not HTTP.
        guard let end = head.firstRange(of: Array("\r\n\r\n".utf8)) ?? (head.count > 16384 ? head.indices : nil) else { return }
        let text = String(decoding: head[..<end.upperBound], as: UTF8.self)
        let requestLine = HTTPBackend.apacheEscaped(head[..<end.lowerBound].prefix { $0 != UInt8(ascii: "\r") })
        let peer = context.channel.remoteAddress?.ipAddress ?? "?"
        let status = shared.status
        shared.record(head: text, logLine: "\(peer) - - [\(HTTPBackend.apacheTime())] \"\(requestLine)\" \(status) \(body.utf8.count)")
        head = []
        let answer = "HTTP/1.1 \(status) \(status < 400 ? "OK" : "Service Unavailable")\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
