import BalancerCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One side of a relayed connection: what its channel reads, the partner's channel writes.
///
/// - Each side is in its channel's pipeline before the two are linked (the client's from
///   accept, the server's from before its connect); until then it holds its channel's reads.
///   Channels keep autoRead on: turning it off and on again costs two NIO option changes and
///   two epoll changes per channel. NIO still reads a socket whose peer has sent its FIN
///   (until the EOF, whatever was asked), so what arrives before the link is kept and passed
///   on at the link, FIN included; it is bounded by the socket's receive buffer.
/// - Backpressure: a read is held back while the partner's channel is not writable, so a
///   slow reader slows the sender instead of growing memory (autoRead's reads pass through
///   `read(context:)`).
/// - Half-close: one side's FIN shuts the other side's output once its queued bytes are
///   written; the connection ends when both directions are done.
/// - Nothing queued is dropped when the other side closes: queued bytes are written first,
///   bounded by `drainTimeout` so a reader that never reads cannot hold the connection.
/// - Except when the other side failed (its peer reset it, or any error): then nobody is
///   left to read what this side would deliver, so this side is reset at once too. A reset,
///   not a FIN: a FIN would make a stream cut off by the reset look complete.
public final class RelayHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Bytes this side's channel has read (and handed to the partner).
    public private(set) var bytesRead: UInt64 = 0
    /// Read but not yet reported: counters move once per read burst, not per buffer.
    private var unreported: UInt64 = 0
    private var report: (UInt64) -> Void = { _ in }
    private var partner: RelayHandler?
    private var context: ChannelHandlerContext?
    private var readHeldBack = false
    private var inputClosed = false
    /// This side's channel closed on an error (a reset): the partner is aborted, not drained.
    private var failed = false
    /// Read before the link.
    private var early: [ByteBuffer] = []
    private let drainTimeout: TimeAmount
    private var whenActive: ((RelayHandler) -> Void)?

    /// `whenActive` runs once, when the channel has become active: where the client's side
    /// starts connecting to a server.
    public init(drainTimeout: TimeAmount = .seconds(60), whenActive: ((RelayHandler) -> Void)? = nil) {
        self.drainTimeout = drainTimeout
        self.whenActive = whenActive
    }

    /// Makes two handlers, each already in its channel's pipeline, relay to each other, and
    /// lets their held reads go. `progress` hears, while the connection lasts, the bytes each
    /// side read since it last heard.
    public static func link(_ first: RelayHandler, _ second: RelayHandler,
                            progress: @escaping (_ fromFirst: UInt64, _ fromSecond: UInt64) -> Void) {
        first.partner = second
        second.partner = first
        first.report = { progress($0, 0) }
        second.report = { progress(0, $0) }
        first.passOnEarlyInput()
        second.passOnEarlyInput()
        first.releaseHeldRead()
        second.releaseHeldRead()
    }

    private func passOnEarlyInput() {
        guard let peer = partner?.context else { return }
        if !early.isEmpty {
            for buffer in early { peer.write(wrapOutboundOut(buffer), promise: nil) }
            early = []
            peer.flush()
            reportProgress()
        }
        if inputClosed { partner?.partnerInputClosed() }
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if let whenActive {
            self.whenActive = nil
            whenActive(self)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytesRead += UInt64(buffer.readableBytes)
        unreported += UInt64(buffer.readableBytes)
        if let peer = partner?.context {
            peer.write(wrapOutboundOut(buffer), promise: nil)
        } else {
            early.append(buffer)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        reportProgress()
        partner?.context?.flush()
    }

    private func reportProgress() {
        guard unreported > 0, partner != nil else { return }
        report(unreported)
        unreported = 0
    }

    /// Reads only when the partner is there and can take more.
    public func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable == true {
            context.read()
        } else {
            readHeldBack = true
        }
    }

    private func releaseHeldRead() {
        guard readHeldBack, let context, partner?.context?.channel.isWritable == true else { return }
        readHeldBack = false
        context.read()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.releaseHeldRead() }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed:
            inputClosed = true
            partner?.partnerInputClosed()
        case is IdleStateHandler.IdleStateEvent:
            context.close(promise: nil)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        reportProgress()
        if failed {
            partner?.abort()
        } else {
            partner?.drainAndClose()
        }
        context.fireChannelInactive()
    }

    /// NIO reports a reset (ECONNRESET read from the socket) here before it closes the channel.
    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        failed = true
        context.close(promise: nil)
    }

    /// Closes this side at once with RST (SO_LINGER 0), dropping what is queued for it.
    private func abort() {
        guard let channel = context?.channel else { return }
        guard let socket = channel as? SocketOptionProvider, channel.isActive else {
            channel.close(promise: nil)
            return
        }
        socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).assumeIsolated().whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// The partner read EOF: pass the FIN on. If this side had already read its own EOF,
    /// both directions are done.
    private func partnerInputClosed() {
        guard let context else { return }
        if inputClosed {
            drainAndClose()
        } else {
            // NIO shuts the socket's output only after the queued writes are written.
            context.close(mode: .output, promise: nil)
        }
    }

    /// Writes what is queued for this side, then closes it.
    private func drainAndClose() {
        guard let context, context.channel.isActive else {
            context?.close(promise: nil)
            return
        }
        let channel = context.channel
        let forceClose = context.eventLoop.scheduleTask(in: drainTimeout) { channel.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            forceClose.cancel()
            channel.close(promise: nil)
        }
    }
}
