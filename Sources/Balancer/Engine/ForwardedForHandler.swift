import BalancerCore
import NIOCore

/// Adds `X-Forwarded-For: <client address>` to every HTTP/1.x request a client sends (pen's
/// `-H`). It goes in the client channel's pipeline in front of the relay (behind TLS when
/// that is on); the rewriting itself is `ForwardedForRewriter`.
public final class ForwardedForHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private var rewriter: ForwardedForRewriter

    /// `clientAddress` is the client's IP address as text, e.g. `192.0.2.7` or `2001:db8::7`.
    public init(clientAddress: String, maxHeadLength: Int = ForwardedForRewriter.defaultMaxHeadLength) {
        rewriter = ForwardedForRewriter(clientAddress: clientAddress, maxHeadLength: maxHeadLength)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let output = rewriter.process(unwrapInboundIn(data))
        // A read that ended inside a head has nothing to pass on yet.
        if output.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(output))
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent {
            forwardHeldBack(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        forwardHeldBack(context: context)
        context.fireChannelInactive()
    }

    /// The client has sent its last byte, so a head still incomplete never will be: the server
    /// gets it as it is rather than losing it.
    private func forwardHeldBack(context: ChannelHandlerContext) {
        let heldBack = rewriter.finish()
        guard heldBack.readableBytes > 0 else { return }
        context.fireChannelRead(wrapInboundOut(heldBack))
        context.fireChannelReadComplete()
    }
}
