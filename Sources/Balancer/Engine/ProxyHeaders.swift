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
        let peeked: Int
        switch SystemCallResult({ penha_peek(descriptor, scratch.baseAddress, min(ProxyHeader.longest, scratch.count)) }) {
        case .done(0):
            // Gone before sending anything: closed as it came.
            perform(connection, connection.machine.closeRequested())
            return true
        case .done(let count):
            peeked = count
        case .wouldBlock:
            connection.client.readable = false
            return false
        case .failed:
            perform(connection, connection.machine.failed())
            return true
        }
        switch ProxyHeader.parse(UnsafeRawBufferPointer(rebasing: scratch[..<peeked])) {
        case .incomplete:
            // After the client's FIN no rest comes: it is refused now, not at the 5 s bound.
            guard !connection.client.peerEnded else {
                perform(connection, connection.machine.proxyHeaderRefused("the connection ended within its PROXY protocol header"))
                return true
            }
            // The rest wakes the thread again: each arrival is a new edge.
            connection.client.readable = false
            return false
        case .invalid(let reason):
            perform(connection, connection.machine.proxyHeaderRefused(reason))
            return true
        case .header(let length, let source, let destination):
            guard SystemCallResult({ penha_recv(descriptor, scratch.baseAddress, length) }) == .done(length) else {
                perform(connection, connection.machine.failed())
                return true
            }
            if let source {
                connection.peer = PeerAddress(source)
                connection.clientKey = connection.peer.clientKey
            }
            connection.proxyDestination = destination
            admit(connection)
            return true
        }
    }

    /// Sends the header as the first bytes to a just connected server: its socket's buffer is
    /// empty, so it takes them at once; what it did not take goes before anything queued.
    func sendProxyHeader(_ connection: Connection, _ version: ProxyProtocol) {
        let source = connection.peer.proxyEndpoint
        let destination = connection.proxyDestination ?? PeerAddress.local(of: connection.client.descriptor).proxyEndpoint
        let header = ProxyHeader.encode(version, source: source, destination: destination)
        let sent: Int
        switch header.withUnsafeBytes({ bytes in SystemCallResult { penha_send(connection.server.descriptor, bytes.baseAddress, bytes.count) } }) {
        case .done(let count): sent = count
        case .wouldBlock: sent = 0
        case .failed: return perform(connection, connection.machine.failed())
        }
        if sent < header.count { connection.toServer.prepend(header[sent...], &pool) }
    }
}
