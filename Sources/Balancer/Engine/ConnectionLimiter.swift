import BalancerCore
import NIOCore

/// pen's `-x`: at most `limit` client connections at once. Beyond it the listener stops
/// accepting, so new clients wait in the kernel's accept backlog instead of being accepted
/// and dropped. Sits in the listening channel's pipeline in front of NIO's acceptor.
/// A burst accepted in the same read as the last free slot is held here, not dropped, and
/// handed on as slots free.
public final class ConnectionLimiter: ChannelInboundHandler {
    public typealias InboundIn = Channel
    public typealias InboundOut = Channel

    /// 0 means no limit.
    public var limit: Int {
        didSet { resumeIfRoom() }
    }
    public private(set) var active = 0
    private var held = CircularBuffer<NIOAny>()
    private var context: ChannelHandlerContext?
    private var paused = false

    public init(limit: Int) {
        self.limit = limit
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if hasRoom {
            admit(data)
        } else {
            held.append(data)
            pause()
        }
    }

    /// A client connection admitted earlier has closed.
    public func release() {
        active -= 1
        resumeIfRoom()
    }

    private var hasRoom: Bool { limit == 0 || active < limit }

    private func admit(_ data: NIOAny) {
        active += 1
        if !hasRoom { pause() }
        context?.fireChannelRead(data)
    }

    private func pause() {
        guard !paused, let channel = context?.channel else { return }
        paused = true
        _ = channel.setOption(ChannelOptions.autoRead, value: false)
    }

    private func resumeIfRoom() {
        while hasRoom, let next = held.popFirst() { admit(next) }
        guard hasRoom, paused, let channel = context?.channel else { return }
        paused = false
        _ = channel.setOption(ChannelOptions.autoRead, value: true)
    }
}
