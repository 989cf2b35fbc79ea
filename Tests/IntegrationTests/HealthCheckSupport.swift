import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Listeners that only note when each was first connected to (and close every connection):
/// to see how a round of checks is spread over time.
final class ConnectRecorder {
    let ports: [Int]
    private let channels: [Channel]
    private let times: Times

    final class Times: Sendable {
        private let first = Mutex<[Int: Date]>([:])
        func note(_ index: Int) {
            first.withLock { first in
                if first[index] == nil { first[index] = Date() }
            }
        }
        var firsts: [Int: Date] { first.withLock { $0 } }
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
