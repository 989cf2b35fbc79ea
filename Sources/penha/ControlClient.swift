import Balancer
import BalancerCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The client side of the control socket, for `penha ctl` and `penha status`: sends one
/// command line, reads the answer until penha closes. Plain blocking sockets, every wait
/// cut to what is left of one deadline; this process only asks and prints.
enum ControlClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// For one exchange, from connecting to the answer's last byte: a peer that trickles
    /// bytes cannot keep the client waiting.
    static let timeoutSeconds = 10
    /// The longest answer taken. The largest real one is `status`: some 400 bytes a server
    /// at most, so this holds about 40,000 servers.
    static let maxAnswerBytes = 16 << 20

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
        let deadline = NIODeadline.now() + .seconds(Int64(timeoutSeconds))
        try limitWait(of: fd, SO_SNDTIMEO, to: deadline, address)
        guard target.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0 else {
            throw Failure(description: "cannot connect to penha at \(address): \(SystemErrorText.describe(errno: errno))")
        }
        let request = Array((command + "\n").utf8)
        var offset = 0
        while offset < request.count {
            try limitWait(of: fd, SO_SNDTIMEO, to: deadline, address)
            let sent = request[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw Failure(description: "cannot send to \(address): \(SystemErrorText.describe(errno: errno))") }
            offset += sent
        }
        shutdown(fd, Int32(SHUT_WR))
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            try limitWait(of: fd, SO_RCVTIMEO, to: deadline, address)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else {
                guard errno == EAGAIN else {
                    throw Failure(description: "no answer from \(address): \(SystemErrorText.describe(errno: errno))")
                }
                throw timedOut(address)
            }
            if count == 0 { break }
            guard answer.count + count <= maxAnswerBytes else {
                throw Failure(description: "the answer from \(address) is longer than \(maxAnswerBytes) bytes")
            }
            answer += chunk.prefix(count)
        }
        return answer
    }

    /// Makes the socket's next send or receive (`option`) wait no later than `deadline`.
    private static func limitWait(of fd: Int32, _ option: Int32, to deadline: NIODeadline, _ address: Endpoint) throws {
        let left = (deadline - .now()).nanoseconds
        guard left > 0 else { throw timedOut(address) }
        // A zero timeval would mean no limit at all: at least a microsecond.
        var timeout = timeval(tv_sec: Int(left / 1_000_000_000), tv_usec: max(1, Int(left % 1_000_000_000 / 1000)))
        setsockopt(fd, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    private static func timedOut(_ address: Endpoint) -> Failure {
        Failure(description: "no whole answer from \(address) within \(timeoutSeconds) s")
    }
}
