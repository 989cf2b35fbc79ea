import BalancerCore
import EngineCore
import NIOCore

/// One relayed client connection in its thread's slot table: its life as a value
/// (`ConnectionStateMachine`: placement, number, deadlines, counters, the ends of both
/// directions) and what the I/O needs beside it: both sockets, the two pipes between them,
/// the client's address and its transformations. Slots are reused; the generation tells an
/// event for a socket of a slot's previous connection from its current one.
final class Connection {
    typealias Direction = ConnectionStateMachine.Direction

    /// One socket's readiness as edge-triggered epoll last reported it: set by an event,
    /// cleared by EAGAIN or a short read or write.
    struct Side {
        /// -1 while the side has no socket (the server's before its connect): the value the
        /// system calls take for "none", kept here only.
        var descriptor: Int32 = -1
        var readable = false
        var writable = false
        /// EPOLLRDHUP came: the peer's FIN is queued, so reads go on until they return 0.
        var peerEnded = false
    }

    let slot: Int
    var generation: UInt32 = 0
    var machine = ConnectionStateMachine()
    var client = Side()
    var server = Side()
    var toServer = RelayBuffer()
    var toClient = RelayBuffer()
    var peer = PeerAddress()
    var clientKey = ClientKey.local
    var rewriter: ForwardedForRewriter?
    var tls: TLSConnection?
    /// The destination an accepted PROXY protocol header named, passed on in ours.
    var proxyDestination: ProxyEndpoint?
    /// In the thread's list of connections to pump again (a burst bounded per turn).
    var isQueued = false

    init(slot: Int) {
        self.slot = slot
    }

    /// epoll's token for one of its sockets: generation, slot and side.
    func token(server isServer: Bool) -> UInt64 {
        UInt64(generation) << 32 | UInt64(slot) << 1 | (isServer ? 1 : 0)
    }

    /// The slot is free again: its buffers back to the pool, the next client's events told apart.
    func clear(_ pool: inout BufferPool) {
        generation &+= 1
        client = Side()
        server = Side()
        toServer.reset(&pool)
        toClient.reset(&pool)
        rewriter = nil
        tls = nil
        proxyDestination = nil
        isQueued = false
    }

    /// The direction's source has bytes to read and its pipe room for them.
    func canRead(_ direction: Direction) -> Bool {
        switch direction {
        case .toServer: return client.readable && !machine.toServer.sourceEnded && !toServer.isFull
        case .toClient: return server.readable && !machine.toClient.sourceEnded && !toClient.isFull
        }
    }

    /// The direction's pipe holds bytes or an end to pass on.
    func hasOutput(_ direction: Direction) -> Bool {
        switch direction {
        case .toServer: return toServer.pending > 0 || machine.toServer.isEndPending
        case .toClient: return toClient.pending > 0 || machine.toClient.isEndPending
        }
    }

    /// Bytes wait and the destination takes them, or only the end is left to pass on.
    func canWrite(_ direction: Direction) -> Bool {
        switch direction {
        case .toServer: return toServer.pending > 0 ? server.writable : machine.toServer.isEndPending
        case .toClient: return toClient.pending > 0 ? client.writable : machine.toClient.isEndPending
        }
    }

    func pending(_ direction: Direction) -> Int {
        direction == .toServer ? toServer.pending : toClient.pending
    }

    /// The socket the direction's bytes go to.
    func destination(_ direction: Direction) -> Int32 {
        direction == .toServer ? server.descriptor : client.descriptor
    }
}
