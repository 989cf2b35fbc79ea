import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// An HTTP backend on loopback: answers each request with the status it is set to, its
/// name as the body, and closes. Keeps the requests it got, to see what a check sends.
final class StatusBackend {
    let name: String
    let port: Int
    private let channel: Channel
    private let shared: Shared

    final class Shared: @unchecked Sendable {
        private let lock = NSLock()
        private var currentStatus: Int
        private var received: [String] = []
        init(status: Int) { currentStatus = status }
        var status: Int {
            get { lock.lock(); defer { lock.unlock() }; return currentStatus }
            set { lock.lock(); currentStatus = newValue; lock.unlock() }
        }
        var requests: [String] { lock.lock(); defer { lock.unlock() }; return received }
        func record(_ request: String) { lock.lock(); received.append(request); lock.unlock() }
    }

    init(_ name: String, status: Int) throws {
        self.name = name
        let shared = Shared(status: status)
        self.shared = shared
        channel = try ServerBootstrap(group: Backend.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(StatusBackendHandler(name: name, shared: shared))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress!.port!
    }

    /// The status the next answers carry.
    var status: Int {
        get { shared.status }
        set { shared.status = newValue }
    }

    /// The head of every request received, in order.
    var requests: [String] { shared.requests }

    deinit { try? channel.close().wait() }
}

private final class StatusBackendHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let name: String
    private let shared: StatusBackend.Shared
    private var head = ""

    init(name: String, shared: StatusBackend.Shared) {
        self.name = name
        self.shared = shared
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        head += String(buffer: unwrapInboundIn(data))
        guard head.contains("\r\n\r\n"), head.count < 65536 else { return }
        shared.record(head)
        let status = shared.status
        let answer = "HTTP/1.1 \(status) \(status < 400 ? "OK" : "Service Unavailable")\r\n"
            + "Content-Length: \(name.utf8.count + 1)\r\nConnection: close\r\n\r\n\(name)\n"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).whenComplete { _ in context.close(promise: nil) }
        head = ""
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Listeners that only note when each was first connected to (and close every connection):
/// to see how a round of checks is spread over time.
final class ConnectRecorder {
    let ports: [Int]
    private let channels: [Channel]
    private let times: Times

    final class Times: @unchecked Sendable {
        private let lock = NSLock()
        private var first: [Int: Date] = [:]
        func note(_ index: Int) {
            lock.lock()
            if first[index] == nil { first[index] = Date() }
            lock.unlock()
        }
        var firsts: [Int: Date] { lock.lock(); defer { lock.unlock() }; return first }
    }

    init(count: Int) throws {
        let times = Times()
        self.times = times
        channels = try (0..<count).map { index in
            try ServerBootstrap(group: Backend.group)
                .childChannelInitializer { channel in
                    times.note(index)
                    return channel.close()
                }
                .bind(host: "127.0.0.1", port: 0).wait()
        }
        ports = channels.map { $0.localAddress!.port! }
    }

    /// When each listener was first connected to, by index.
    var firstConnects: [Int: Date] { times.firsts }

    deinit { channels.forEach { try? $0.close().wait() } }
}

/// One HTTP request through penha; the body's first line (the backend's name), nil on any failure.
func httpAnswer(_ penha: Penha, source: String? = nil) -> String? {
    guard let client = try? Client(port: penha.port, source: source, timeout: 3) else { return nil }
    guard (try? client.send("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")) != nil,
          let bytes = try? client.readToEnd() else { return nil }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let body = text.range(of: "\r\n\r\n") else { return nil }
    return text[body.upperBound...].split(separator: "\n").first.map(String.init)
}

extension Penha {
    /// The `status` server line of server `index` as name/value pairs (its `check_result` too).
    func serverStatus(_ index: Int) -> [String: String] {
        guard let lines = try? command("status") else { return [:] }
        var pairs: [String: String] = [:]
        if let line = lines.first(where: { $0.hasPrefix("server \(index) ") }) {
            let words = line.split(separator: " ").map(String.init)
            for position in stride(from: 2, to: words.count - 1, by: 2) { pairs[words[position]] = words[position + 1] }
        }
        if let result = lines.first(where: { $0.hasPrefix("check_result \(index) ") }) {
            pairs["check_result"] = String(result.dropFirst("check_result \(index) ".count))
        }
        return pairs
    }
}
