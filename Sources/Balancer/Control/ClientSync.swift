import BalancerCore
import Logging
import NIOCore
import NIOPosix
import VRRPCore

/// `sync`: the client table follows the VIP. The node that holds it (VRRP master, or
/// standalone: every node of an active group behind routers, so all of them send and each
/// learns every other's clients) connects to each peer and sends it a full copy of the table, then every
/// ~50 ms the changes since, coalesced; each node listens for its peers and applies what they
/// send (`BalancerState.applyRemote`: last writer wins). Everything runs on the balancer's
/// event loop; the data path only marks changed slots (`ClientTable.isJournaling`), so a
/// dead, slow or hostile peer costs it nothing: nothing is read from the table for a peer
/// before it has proven the key (`SyncSession`), a full copy holds the lock the data path
/// takes for one part of the table at a time, and what a peer cannot take waits in its
/// bounded `SyncOutbox`, which drops the oldest and resyncs.
final class ClientSync {
    let settings: SyncSettings
    private let key: ClientSyncKey
    fileprivate unowned let service: BalancerService
    /// This run's node in its hellos: a hello that names it is the node's own, come back.
    private let node = ClientSync.randomBytes(SyncHello.nodeSize)
    private var listener: Channel?
    private var links: [PeerLink] = []
    private var incoming: [ObjectIdentifier: IncomingConnection] = [:]
    private var places = SyncPlaces<ObjectIdentifier>()
    private var tick: RepeatedTask?
    /// Entries applied from each peer, by its address.
    private var received: [IPAddress: UInt64] = [:]
    /// Connections refused (not a peer's address) and messages rejected (bad MAC, replayed, malformed).
    private var rejected: UInt64 = 0
    private var rejectLog = LogThrottle(interval: .seconds(10))
    private var stopped = false

    static let batchInterval = TimeAmount.milliseconds(50)
    /// A connection whose peer has not proven the key by then is dropped, either way.
    static let helloTimeout = TimeAmount.seconds(5)

    init(settings: SyncSettings, key: ClientSyncKey, service: BalancerService) {
        self.settings = settings
        self.key = key
        self.service = service
    }

    func start() {
        service.eventLoop.assertInEventLoop()
        service.withStateOnLoop { $0.clients.isJournaling = true }
        links = settings.peers.map { PeerLink(peer: $0, sync: self) }
        for link in links { link.connect() }
        let sync = WeakOnLoop(self, eventLoop: service.eventLoop)
        tick = service.eventLoop.scheduleRepeatedTask(initialDelay: Self.batchInterval, delay: Self.batchInterval) { _ in
            sync.object?.sendChanges()
        }
        listen(attemptsLeft: Self.bindAttempts)
    }

    /// After a takeover (`penha upgrade`) the old process holds the port until it exits, a
    /// moment later: an address in use is tried again every 100 ms, for at most 3 s.
    static let bindAttempts = 30

    private func listen(attemptsLeft: Int) {
        let listen = settings.listen
        let sync = WeakOnLoop(self, eventLoop: service.eventLoop)
        // The peers' connections are on the balancer's loop too (the group is that one loop).
        ServerBootstrap(group: service.eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard let sync = sync.object else { return channel.close() }
                return sync.accept(channel)
            }
            .bind(host: listen.ip.description, port: listen.port)
            .assumeIsolated().whenComplete { [weak self] result in
                guard let self else { return }
                if self.stopped {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                switch result {
                case .success(let channel):
                    self.listener = channel
                    self.service.logger.notice("sync: listening on \(listen) for \(self.settings.peers.map(\.description).joined(separator: ", "))")
                case .failure(let error as IOError) where error.errnoCode == EADDRINUSE && attemptsLeft > 1:
                    self.service.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(100)) { [weak self] in
                        self?.listen(attemptsLeft: attemptsLeft - 1)
                    }
                case .failure(let error):
                    self.service.logger.error("sync: cannot listen on \(listen): \(SystemErrorText.describe(error))")
                }
            }
    }

    func stop() {
        service.eventLoop.assertInEventLoop()
        stopped = true
        tick?.cancel()
        listener?.close(promise: nil)
        for link in links { link.stop() }
        for connection in incoming.values { connection.channel.close(promise: nil) }
        incoming = [:]
        places = SyncPlaces()
        service.withStateOnLoop { $0.clients.isJournaling = false }
    }

    /// What `status` shows.
    func report(now: NIODeadline) -> StatusReport.Sync {
        StatusReport.Sync(
            listen: settings.listen.description, sending: service.holdsVirtualAddresses, rejected: rejected,
            peers: links.map { link in
                StatusReport.Sync.Peer(
                    address: link.peer.description, connected: link.isConnected, sent: link.sent,
                    received: received[link.peer.ip, default: 0], fullCopies: link.fullCopies,
                    lastFullCopySecondsAgo: link.lastFullCopy.map { Int((now - $0).nanoseconds / 1_000_000_000) },
                    dropped: link.outbox.dropped)
            })
    }

    // MARK: sending

    /// Every batch interval: the table's changes to each peer's outbox, then out. A node that
    /// does not hold the VIP sends nothing and owes its peers a full copy for when it does.
    private func sendChanges() {
        let changes = service.withStateOnLoop { $0.takeClientChanges() }
        let sending = service.holdsVirtualAddresses
        for link in links {
            if sending {
                for change in changes { link.outbox.add(change) }
                link.flush()
            } else {
                link.outbox.requestFullCopy()
            }
        }
    }

    /// The whole table for a full copy, read a part at a time, each under the lock briefly.
    fileprivate func snapshot() -> [SyncChange] {
        BalancerState.clientSnapshot { slots in service.withStateOnLoop { $0.clientChanges(slots: slots) } }
    }

    fileprivate var logger: Logger { service.logger }

    /// This side's hello for a new connection: the node and a fresh nonce.
    fileprivate func hello() -> SyncHello { SyncHello(node: node, nonce: Self.randomBytes(SyncMessage.nonceSize)) }

    fileprivate var mac: SyncSession.MAC { { [key] in key.mac($0) } }

    private static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// Calls `expired` with the reason unless the peer on `channel` has proven the key within
    /// the hello bound, so that a connection from (or to) a process without the key never holds on.
    fileprivate func boundHandshake(of channel: Channel, isEstablished: @escaping () -> Bool, expired: @escaping (String) -> Void) {
        let deadline = channel.eventLoop.assumeIsolated().scheduleTask(in: Self.helloTimeout) {
            if !isEstablished() { expired("it did not prove the key within \(Self.helloTimeout.nanoseconds / 1_000_000_000) s") }
        }
        channel.closeFuture.assumeIsolated().whenComplete { _ in deadline.cancel() }
    }

    // MARK: receiving

    private func accept(_ channel: Channel) -> EventLoopFuture<Void> {
        let remote = ClientKey(channel.remoteAddress)
        guard settings.isPeer(remote) else {
            reject("connection from \(Endpoint.describe(channel.remoteAddress)), which is not a sync peer")
            return channel.close()
        }
        let connection = IncomingConnection(channel: channel, peer: remote, session: .responder(hello(), mac: mac))
        let id = ObjectIdentifier(channel)
        incoming[id] = connection
        if let pushedOut = places.admit(id, from: remote) {
            drop(pushedOut, because: "a newer connection took its place before it proved the key")
        }
        boundHandshake(of: channel, isEstablished: { connection.session.isEstablished }) { [weak self] reason in
            self?.drop(id, because: reason)
        }
        channel.closeFuture.assumeIsolated().whenComplete { [weak self] _ in self?.forget(id) }
        // The responder speaks only once the initiator's hello has come.
        let handler = SyncConnectionHandler(onActive: { _ in }, onBytes: { [weak self] bytes in self?.receive(bytes, on: connection) },
                                            onWritable: {})
        return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
    }

    private func receive(_ bytes: ByteBufferView, on connection: IncomingConnection) {
        let id = ObjectIdentifier(connection.channel)
        let output: SyncSession.Output
        do {
            output = try connection.session.receive(bytes)
        } catch {
            return drop(id, because: "\(error)")
        }
        if !output.reply.isEmpty { connection.channel.writeAndFlush(ByteBuffer(bytes: output.reply), promise: nil) }
        if output.proven, let replaced = places.prove(id) {
            // The peer's connection from before it reconnected, if it lingers.
            incoming[replaced]?.channel.close(promise: nil)
            forget(replaced)
        }
        for message in output.messages {
            switch message {
            case .fullCopy(_, _, let entries), .updates(let entries):
                let now = NIODeadline.now()
                let applied = service.withStateOnLoop { $0.applyRemote(entries, now: now) }
                received[connection.peer, default: 0] += UInt64(applied)
            }
        }
    }

    /// An incoming connection refused: closed, counted, and its place free at once.
    private func drop(_ id: ObjectIdentifier, because reason: String) {
        guard let connection = incoming[id] else { return }
        reject("peer \(Endpoint.describe(connection.channel.remoteAddress)) dropped: \(reason)")
        connection.channel.close(promise: nil)
        forget(id)
    }

    private func forget(_ id: ObjectIdentifier) {
        incoming[id] = nil
        places.remove(id)
    }

    fileprivate func reject(_ reason: String) {
        rejected += 1
        if let note = rejectLog.admitNote(now: .now()) { service.logger.warning("sync: \(reason)\(note)") }
    }
}

/// A connection a peer made to send this node its table.
private final class IncomingConnection {
    let channel: Channel
    let peer: IPAddress
    var session: SyncSession

    init(channel: Channel, peer: IPAddress, session: SyncSession) {
        self.channel = channel
        self.peer = peer
        self.session = session
    }
}

/// This node's connection to one peer: made and made again (back-off from 100 ms to 5 s),
/// and what the peer is still to be sent.
private final class PeerLink {
    let peer: SyncSettings.Address
    unowned let sync: ClientSync
    var outbox = SyncOutbox()
    /// The connection to the peer while there is one. Its session is changed in place
    /// (`open?.session...`): a write may close the channel, and `closed()` clear this, at once.
    private var open: (channel: Channel, session: SyncSession)?
    private var retryDelay = PeerLink.firstRetry
    private var retry: Scheduled<Void>?
    private var stopped = false
    private(set) var sent: UInt64 = 0
    private(set) var fullCopies: UInt64 = 0
    private(set) var lastFullCopy: NIODeadline?
    private var connectLog = LogThrottle(interval: .seconds(30))

    static let firstRetry = TimeAmount.milliseconds(100)
    static let lastRetry = TimeAmount.seconds(5)

    /// A failed connect in words: NIO wraps the system error of each address it tried
    /// (`Connection errors: SingleConnectionFailure(target: ...)`); the peer has one address.
    static func describe(_ error: Error) -> String {
        guard let error = error as? NIOConnectionError, let first = error.connectionErrors.first else {
            return SystemErrorText.describe(error)
        }
        return SystemErrorText.describe(first.error)
    }
    /// Messages written in one go before yielding the loop; NIO's writability stops it sooner.
    static let messagesPerFlush = 64

    init(peer: SyncSettings.Address, sync: ClientSync) {
        self.peer = peer
        self.sync = sync
    }

    var isConnected: Bool { open?.session.isEstablished ?? false }

    func connect() {
        guard !stopped else { return }
        let link = WeakOnLoop(self, eventLoop: sync.service.eventLoop)
        var bootstrap = ClientBootstrap(group: sync.service.eventLoop).connectTimeout(.seconds(2))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                guard link.object != nil else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SyncConnectionHandler(
                        onActive: { context in link.object?.active(context) },
                        onBytes: { bytes in link.object?.receive(bytes) },
                        onWritable: { link.object?.flush() }))
                }
            }
        // From the listen address, which is what the peer knows this node by.
        let listen = sync.settings.listen.ip
        if listen != IPAddress(high: 0, low: 0), listen != IPAddress(ipv4: 0),
           let source = try? SocketAddress(ipAddress: listen.description, port: 0) {
            bootstrap = bootstrap.bind(to: source)
        }
        bootstrap.connect(host: peer.ip.description, port: peer.port).assumeIsolated().whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let channel):
                guard !self.stopped else { return channel.close(promise: nil) }
                channel.closeFuture.assumeIsolated().whenComplete { [weak self] _ in self?.closed() }
            case .failure(let error):
                if let note = self.connectLog.admitNote(now: .now()) {
                    self.sync.logger.info("sync: cannot connect to \(self.peer): \(Self.describe(error))\(note)")
                }
                self.scheduleRetry()
            }
        }
    }

    func stop() {
        stopped = true
        retry?.cancel()
        open?.channel.close(promise: nil)
    }

    private func active(_ context: ChannelHandlerContext) {
        let channel = context.channel
        let (session, hello) = SyncSession.initiator(sync.hello(), mac: sync.mac)
        open = (channel, session)
        channel.writeAndFlush(ByteBuffer(bytes: hello), promise: nil)
        sync.boundHandshake(of: channel, isEstablished: { [weak self] in self?.isConnected ?? true }) { [weak self] reason in
            guard let self else { return }
            self.sync.reject("peer \(self.peer) dropped: \(reason)")
            channel.close(promise: nil)
        }
    }

    private func receive(_ bytes: ByteBufferView) {
        let output: SyncSession.Output?
        do {
            // The peer sends nothing after its hello; whatever it sends is checked all the same.
            output = try open?.session.receive(bytes)
        } catch {
            sync.reject("peer \(peer) dropped: \(error)")
            open?.channel.close(promise: nil)
            return
        }
        guard let output, let channel = open?.channel else { return }
        if !output.reply.isEmpty { channel.writeAndFlush(ByteBuffer(bytes: output.reply), promise: nil) }
        if output.proven {
            retryDelay = Self.firstRetry
            outbox.requestFullCopy()
            sync.logger.notice("sync: connected to \(peer)")
            flush()
        }
    }

    /// Writes what the peer is owed while the connection takes it.
    func flush() {
        guard let channel = open?.channel, open?.session.isEstablished == true, sync.service.holdsVirtualAddresses else { return }
        var written = 0
        while channel.isWritable, written < Self.messagesPerFlush {
            let now = NIODeadline.now()
            if outbox.needsFullCopy && !outbox.isSendingFullCopy { outbox.startFullCopy(sync.snapshot()) }
            guard let message = outbox.nextMessage(now: now), let frame = open?.session.seal(message) else { break }
            switch message {
            case .fullCopy(_, let last, let entries):
                sent += UInt64(entries.count)
                if last {
                    fullCopies += 1
                    lastFullCopy = now
                }
            case .updates(let entries):
                sent += UInt64(entries.count)
            }
            channel.write(ByteBuffer(bytes: frame), promise: nil)
            written += 1
        }
        if written > 0 { channel.flush() }
    }

    private func closed() {
        open = nil
        if !stopped { sync.logger.notice("sync: connection to \(peer) closed") }
        scheduleRetry()
    }

    private func scheduleRetry() {
        guard !stopped else { return }
        retry = sync.service.eventLoop.assumeIsolated().scheduleTask(in: retryDelay) { [weak self] in self?.connect() }
        retryDelay = min(retryDelay * 2, Self.lastRetry)
    }
}

/// A weak reference read only on its event loop: how NIO's Sendable closures (timers, channel
/// initializers) reach the loop-confined sync objects without keeping a stopped one alive.
private struct WeakOnLoop<Object: AnyObject>: Sendable {
    private struct Reference {
        weak var object: Object?
    }

    private let reference: NIOLoopBound<Reference>

    init(_ object: Object, eventLoop: any EventLoop) {
        reference = NIOLoopBound(Reference(object: object), eventLoop: eventLoop)
    }

    /// On the event loop only.
    var object: Object? { reference.value.object }
}

/// Bytes in, writability changes out, for either end of a sync connection.
private final class SyncConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let onActive: (ChannelHandlerContext) -> Void
    private let onBytes: (ByteBufferView) -> Void
    private let onWritable: () -> Void

    init(onActive: @escaping (ChannelHandlerContext) -> Void, onBytes: @escaping (ByteBufferView) -> Void,
         onWritable: @escaping () -> Void) {
        self.onActive = onActive
        self.onBytes = onBytes
        self.onWritable = onWritable
    }

    func channelActive(context: ChannelHandlerContext) {
        onActive(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onBytes(unwrapInboundIn(data).readableBytesView)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { onWritable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

extension BalancerService {
    /// `body` with the state, on the event loop, at once (under the runtime's lock, which the
    /// engine's threads take too): for the client-table sync.
    func withStateOnLoop<Result>(_ body: (inout BalancerState) -> Result) -> Result {
        eventLoop.assertInEventLoop()
        return shared.withLock { body(&$0.state) }
    }

    /// A changed `sync` command restarts the sync with the new settings and key (read on the
    /// thread pool; the command was refused before if it could not be read).
    func adoptSync() {
        let wanted = configuration.sync
        guard wanted != onLoop.value.clientSync?.settings else { return }
        onLoop.value.clientSync?.stop()
        onLoop.value.clientSync = nil
        guard let wanted else { return }
        blockingPool.runIfActive(eventLoop: eventLoop) { try ClientSyncKey.read(wanted.keyFile) }.whenComplete { result in
            guard self.configuration.sync == wanted, self.onLoop.value.clientSync == nil else { return }
            switch result {
            case .success(let key):
                let sync = ClientSync(settings: wanted, key: key, service: self)
                self.onLoop.value.clientSync = sync
                sync.start()
            case .failure(let error):
                self.logger.error("sync not started: \(error)")
            }
        }
    }
}
