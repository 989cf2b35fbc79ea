import BalancerCore
import CEngine
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The PROXY protocol on the engine's sockets (`ProxyHeader` makes and reads the bytes):
/// read from an upstream balancer with `accept_proxy`, sent to a server with `proxy_protocol`.
extension EngineThread {
    /// Looks at the client's first bytes (MSG_PEEK) until a whole header is there, takes just
    /// the header, and goes on with the client it names; what follows stays in the socket
    /// for the handshake or the server. True when the connection moved on or ended.
    func proxyHeaderStep(_ connection: Connection) -> Bool {
        guard connection.client.readable else { return false }
        let descriptor = connection.client.descriptor
        let peeked = penha_peek(descriptor, scratch.baseAddress, min(ProxyHeader.longest, scratch.count))
        guard peeked > 0 else {
            if peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                connection.client.readable = false
                return false
            }
            end(connection, reset: peeked < 0)
            return true
        }
        switch ProxyHeader.parse(UnsafeRawBufferPointer(rebasing: scratch[..<peeked])) {
        case .incomplete:
            // The rest wakes the thread again: each arrival is a new edge.
            connection.client.readable = false
            return false
        case .invalid(let reason):
            proxyHeaderRefused(connection, reason)
            return true
        case .header(let length, let source, let destination):
            guard penha_recv(descriptor, scratch.baseAddress, length) == length else {
                end(connection, reset: true)
                return true
            }
            if let source {
                connection.peer = PeerAddress(source)
                connection.clientKey = connection.peer.clientKey
            }
            connection.proxyDestination = destination
            connection.phase = .accepted
            admit(connection)
            return true
        }
    }

    /// A client without a valid header is closed: the spec forbids guessing (section 2).
    /// Logged at most once a second for all threads, with the count since.
    func proxyHeaderRefused(_ connection: Connection, _ reason: String) {
        if let note = engine.proxyRefusalLog.withLock({ $0.admitNote(now: NIODeadline.uptimeNanoseconds(now)) }) {
            engine.events.log(.info, "PROXY protocol header refused\(note)", ["client": connection.peer.text, "error": reason])
        }
        end(connection, reset: false)
    }

    /// Sends the header as the first bytes to a just connected server: its socket's buffer is
    /// empty, so it takes them at once; what it did not take goes before anything queued.
    func sendProxyHeader(_ connection: Connection) {
        let source = connection.peer.proxyEndpoint
        let destination = connection.proxyDestination ?? PeerAddress.local(of: connection.client.descriptor).proxyEndpoint
        let header = ProxyHeader.encode(connection.proxyProtocol, source: source, destination: destination)
        let sent = header.withUnsafeBytes { penha_send(connection.server.descriptor, $0.baseAddress, $0.count) }
        if sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
            connection.failed = true
            return
        }
        if sent < header.count { connection.toServer.prepend(header[max(0, sent)...], &pool) }
    }
}
