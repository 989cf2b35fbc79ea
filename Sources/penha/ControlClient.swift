import Balancer
import BalancerCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The client side of the control socket, for `penha ctl` and `penha status`: sends one
/// command line, reads the answer until penha closes. Plain blocking sockets with bounded
/// waits; this process only asks and prints.
enum ControlClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static let timeoutSeconds = 10

    /// `SOCKET` or `host:port`; a bare port means loopback, as for `-C`.
    static func address(_ text: String?) throws -> Endpoint {
        try Endpoint.controlAddress(text ?? Endpoint.defaultControlPath)
    }

    /// The answer's lines; throws `Failure` when penha cannot be reached or does not answer.
    /// Commands that set something answer nothing, as in pen, and so does a penha that died
    /// on the command: an empty answer counts only when penha then answers `pid`, which
    /// always has an answer, on a second connection.
    static func send(_ command: String, to address: Endpoint) throws -> Reply {
        let answer = try exchange(command, with: address)
        if answer.isEmpty, (try? exchange("pid", with: address))?.isEmpty ?? true {
            throw Failure(description: "penha closed the connection without an answer")
        }
        return Reply(wireLines: String(decoding: answer, as: UTF8.self).split(separator: "\n").map(String.init))
    }

    /// One connection: the command out, every byte of the answer in.
    private static func exchange(_ command: String, with address: Endpoint) throws -> [UInt8] {
        let target: SocketAddress
        do {
            target = try address.socketAddress
        } catch {
            throw Failure(description: "bad control address \(address): \(SystemErrorText.describe(error))")
        }
        let family: Int32
        switch target {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        case .unixDomainSocket: family = AF_UNIX
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot make a socket: \(SystemErrorText.describe(errno: errno))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard target.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0 else {
            throw Failure(description: "cannot connect to penha at \(address): \(SystemErrorText.describe(errno: errno))")
        }
        let request = Array((command + "\n").utf8)
        var offset = 0
        while offset < request.count {
            let sent = request[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw Failure(description: "cannot send to \(address): \(SystemErrorText.describe(errno: errno))") }
            offset += sent
        }
        shutdown(fd, Int32(SHUT_WR))
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count >= 0 else {
                let reason = errno == EAGAIN ? "none within \(timeoutSeconds) s" : SystemErrorText.describe(errno: errno)
                throw Failure(description: "no answer from \(address): \(reason)")
            }
            if count == 0 { break }
            answer += chunk.prefix(count)
        }
        return answer
    }
}
