import BalancerCore
import NIOCore

/// One relayed client connection in its thread's slot table: both sockets, the two pipes
/// between them, where the pure core placed it, and its deadlines. Slots are reused; the
/// generation tells an event for a socket of a slot's previous connection from its current one.
final class Connection {
    enum Phase {
        case free
        /// `accept_proxy`: the client's PROXY protocol header is awaited.
        case awaitingProxyHeader
        /// The client is accepted (and its handshake done): no server holds a count for it,
        /// between attempts too.
        case accepted
        /// TLS: the client's handshake runs; no server is chosen yet.
        case handshaking
        /// The connect to `target` is in progress.
        case connecting
        case relaying
    }

    /// One socket's readiness as edge-triggered epoll last reported it: set by an event,
    /// cleared by EAGAIN or a short read or write.
    struct Side {
        var descriptor: Int32 = -1
        var readable = false
        var writable = false
        /// EPOLLRDHUP came: the peer's FIN is queued, so reads go on until they return 0.
        var peerEnded = false
    }

    let slot: Int
    var generation: UInt32 = 0
    var phase = Phase.free
    var client = Side()
    var server = Side()
    var toServer = RelayBuffer()
    var toClient = RelayBuffer()
    var peer = PeerAddress()
    var clientKey = ClientKey.local
    var placement: BalancerState.Placement?
    var target = Target.emergency
    /// The server as configured, for log lines (made into text only when one is written).
    var serverHost = ""
    var serverPort = 0
    var serverText: String { Endpoint.describe(host: serverHost, port: serverPort) }
    var serverAddress: SocketAddress?
    /// `connection N`, once connected.
    var number = -1
    /// Nanoseconds (monotonic): the connect's deadline while connecting, else when it last moved a byte.
    var deadline: UInt64 = 0
    var lastActive: UInt64 = 0
    /// When both sides have ended and queued bytes still wait: the drain bound's end.
    var drainDeadline: UInt64 = 0
    var connectTimeout: UInt64 = 0
    var idleTimeout: UInt64 = 0
    /// Read but not yet added to the state's counters.
    var unreportedToServer: UInt64 = 0
    var unreportedToClient: UInt64 = 0
    var isReportPending = false
    /// `-l`: the first bytes written to the server are still to be logged.
    var logsRequest = false
    var rewriter: ForwardedForRewriter?
    var tls: TLSConnection?
    /// The PROXY protocol header the server gets first (`server N proxy_protocol`).
    var proxyProtocol = ProxyProtocol.off
    /// The destination an accepted PROXY protocol header named, passed on in ours.
    var proxyDestination: ProxyEndpoint?
    /// TLS: close_notify is queued for the client, before its FIN.
    var closeNotifyQueued = false
    /// A read or write failed (a reset, any error): both sides are to be reset.
    var failed = false
    /// In the thread's list of connections to pump again (a burst bounded per turn).
    var isQueued = false

    init(slot: Int) {
        self.slot = slot
    }

    /// epoll's token for one of its sockets: generation, slot and side.
    func token(server isServer: Bool) -> UInt64 {
        UInt64(generation) << 32 | UInt64(slot) << 1 | (isServer ? 1 : 0)
    }

    func clear(_ pool: inout BufferPool) {
        phase = .free
        generation &+= 1
        client = Side()
        server = Side()
        toServer.reset(&pool)
        toClient.reset(&pool)
        placement = nil
        number = -1
        drainDeadline = 0
        unreportedToServer = 0
        unreportedToClient = 0
        isReportPending = false
        logsRequest = false
        rewriter = nil
        tls = nil
        proxyProtocol = .off
        proxyDestination = nil
        closeNotifyQueued = false
        isQueued = false
        failed = false
    }
}

extension Connection {
    /// The two ways bytes go: the same steps over the other side's socket and pipe.
    enum Direction {
        case toServer, toClient
    }

    /// The direction's source has bytes to read and its pipe room for them.
    func canRead(_ direction: Direction) -> Bool {
        switch direction {
        case .toServer: return client.readable && !toServer.sourceEnded && !toServer.isFull
        case .toClient: return server.readable && !toClient.sourceEnded && !toClient.isFull
        }
    }

    /// The direction's pipe holds bytes or an end to pass on.
    func hasOutput(_ direction: Direction) -> Bool {
        switch direction {
        case .toServer: return toServer.pending > 0 || toServer.isEndPending
        case .toClient: return toClient.pending > 0 || toClient.isEndPending
        }
    }

    /// Bytes wait and the destination takes them, or only the end is left to pass on.
    func canWrite(_ direction: Direction) -> Bool {
        switch direction {
        case .toServer: return toServer.pending > 0 ? server.writable : toServer.isEndPending
        case .toClient: return toClient.pending > 0 ? client.writable : toClient.isEndPending
        }
    }

    func addUnreported(_ count: Int, _ direction: Direction) {
        switch direction {
        case .toServer: unreportedToServer &+= UInt64(count)
        case .toClient: unreportedToClient &+= UInt64(count)
        }
    }
}
