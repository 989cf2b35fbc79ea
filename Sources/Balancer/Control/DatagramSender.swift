import BalancerCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A UDP socket connected to a log daemon: what `-l HOST:PORT` and `penha logpipe` send
/// their lines through, one line a datagram, as pen and penlog do. A plain socket, not a
/// channel: a send is one system call and never waits when asked not to.
public final class DatagramSender: Sendable {
    public let descriptor: Int32
    /// `host:port` as given, for messages.
    public let target: String

    /// Resolves `host` (blocking: call it off an event loop) and connects a socket to it,
    /// bound to `local` first when given (penlog's MY_IP: the address penlogd knows the web
    /// server by).
    public init(host: String, port: Int, from local: String? = nil) throws {
        target = Endpoint.describe(host: host, port: port)
        let remote: SocketAddress
        do {
            remote = try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            throw PenhaError.file("resolve log host", host, "\(error)")
        }
        descriptor = socket(Int32(remote.protocol.rawValue), Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw PenhaError.file("open a socket for", target) }
        do {
            if let local {
                let address: SocketAddress
                do {
                    address = try SocketAddress.makeAddressResolvingHost(local, port: 0)
                } catch {
                    throw PenhaError.file("resolve local address", local, "\(error)")
                }
                guard address.withSockAddr({ bind(descriptor, $0, socklen_t($1)) }) == 0 else {
                    throw PenhaError.file("bind to", local)
                }
            }
            guard remote.withSockAddr({ connect(descriptor, $0, socklen_t($1)) }) == 0 else {
                throw PenhaError.file("connect to", target)
            }
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// Sends one datagram; false when it was not sent. `wait: false` never blocks: a full
    /// socket buffer (EAGAIN) drops the datagram, as does an error the daemon's host reported
    /// for an earlier one (ECONNREFUSED while it is not listening).
    public func send(_ bytes: [UInt8], wait: Bool) -> Bool {
        while true {
            let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, wait ? 0 : Int32(MSG_DONTWAIT)) }
            if sent < 0, errno == EINTR { continue }
            return sent == bytes.count
        }
    }

    deinit {
        close(descriptor)
    }
}
