import BalancerCore
import NIOCore

/// When a NIO listener (the control socket, the metrics port; the TCP engine has its own)
/// accepts. Sits in the listening channel's pipeline in front of NIO's acceptor, and stops
/// accepting (autoRead off) in two cases:
/// - `limit`: at most that many connections at once. Beyond it new clients wait in the
///   kernel's accept backlog instead of being accepted and dropped. A burst accepted in the
///   same read as the last free slot is held here, not dropped, and handed on as slots free.
/// - This host ran out of descriptors or memory (`FailureCause.localResources`):
///   for `FailureCause.backOff`, as HAProxy and nginx do. NIO's accept loop would otherwise retry at once and spin on a backlog it cannot
///   take. NIO's `AcceptBackoffHandler` is not used: the synchronous `ServerBootstrap.bind`
///   does not add it, and it pauses by holding back `read()` calls while `-x` pauses by
///   autoRead; one handler deciding both keeps one pause from ending the other.
public final class ConnectionLimiter: ChannelInboundHandler {
    public typealias InboundIn = Channel
    public typealias InboundOut = Channel

    /// 0 means no limit.
    public var limit: Int {
        didSet { resumeIfRoom() }
    }
    public private(set) var active = 0
    /// Where the local failures go that get through the throttle (at most one a second).
    public var warn: (String) -> Void = { _ in }
    private var held = CircularBuffer<NIOAny>()
    private var context: ChannelHandlerContext?
    /// Whether the listener reads (accepts): what autoRead was last set to.
    public private(set) var isAccepting = true
    private var backingOff: Scheduled<Void>?
    private var failureLog = LogThrottle()

    public init(limit: Int) {
        self.limit = limit
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        backingOff?.cancel()
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if hasRoom {
            admit(data)
        } else {
            held.append(data)
            updateReading()
        }
    }

    /// NIO reports a failed accept here and keeps the listener open for these errnos.
    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard FailureCause(error) == .localResources else {
            context.fireErrorCaught(error)
            return
        }
        localFailure(error, while: "accepting a client")
    }

    /// A socket call failed for a reason of this host's (`FailureCause.isLocal`): logged at
    /// most once a second with the count since, and on a shortage accepting pauses, since a
    /// client accepted now could only be closed again.
    public func localFailure(_ error: Error, while doing: String) {
        let shortage = FailureCause(error) == .localResources
        if let note = failureLog.admitNote(now: .now()) {
            let pause = shortage ? ", not accepting for \(FailureCause.backOff.nanoseconds / 1_000_000) ms" : ""
            warn("local failure \(doing), no server blacklisted\(pause): \(error)\(note)")
        }
        guard shortage, backingOff == nil, let context else { return }
        backingOff = context.eventLoop.assumeIsolated().scheduleTask(in: FailureCause.backOff) {
            self.backingOff = nil
            self.updateReading()
        }
        updateReading()
    }

    /// A client connection admitted earlier has closed.
    public func release() {
        active -= 1
        resumeIfRoom()
    }

    private var hasRoom: Bool { limit == 0 || active < limit }

    private func admit(_ data: NIOAny) {
        active += 1
        updateReading()
        context?.fireChannelRead(data)
    }

    private func resumeIfRoom() {
        while hasRoom, let next = held.popFirst() { admit(next) }
        updateReading()
    }

    /// Reads (accepts) while there is room and no back-off runs.
    private func updateReading() {
        let accepting = hasRoom && backingOff == nil
        guard isAccepting != accepting, let channel = context?.channel else { return }
        isAccepting = accepting
        _ = channel.setOption(ChannelOptions.autoRead, value: accepting)
    }
}
