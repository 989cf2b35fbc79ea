import BalancerCore
import NIOCore

/// TLS termination in the client channel's pipeline, first after the socket: ciphertext in,
/// plaintext on to the handlers behind it; their plaintext writes go out encrypted.
///
/// - The handshake reads by itself (the relay behind holds the channel's reads until the
///   server is connected, which is after the handshake), is
///   bounded by `handshakeTimeout`, and reports once through `established`; a failure
///   closes the channel.
/// - Afterwards reads are driven by the handlers behind (the relay's backpressure holds):
///   plaintext is only decrypted once they have asked to read, so nothing that arrives
///   with the end of the handshake is handed on before there is a relay to take it.
/// - close_notify from the client is passed on as the end of its input (half-close);
///   closing this side's output sends close_notify first.
final class TLSHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private enum State {
        case idle, handshaking, open, closed
    }

    private let connection: TLSConnection
    private let handshakeTimeout: TimeAmount
    private var established: ((Result<Void, Failure>) -> Void)?
    private var state = State.idle
    private var timeout: Scheduled<Void>?
    /// The handlers behind have asked to read since the handshake began.
    private var readRequested = false
    /// The client's input has ended: close_notify or the socket's EOF.
    private var inputEnded = false
    private var inputClosedFired = false

    init(connection: TLSConnection, handshakeTimeout: TimeAmount = .seconds(30),
         established: @escaping (Result<Void, Failure>) -> Void) {
        self.connection = connection
        self.handshakeTimeout = handshakeTimeout
        self.established = established
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHandshake(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) {
            self.fail(context: context, "no handshake within \(self.handshakeTimeout.nanoseconds / 1_000_000_000) seconds")
        }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .handshaking || state == .open else { return }
        connection.receive(unwrapInboundIn(data))
        if state == .handshaking { advanceHandshake(context: context) }
        deliver(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // deliver() sends its own read-complete; while handshaking nobody else reads.
        if state == .handshaking { context.read() }
    }

    func read(context: ChannelHandlerContext) {
        readRequested = true
        deliver(context: context)
        if state != .closed { context.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .idle, .handshaking:
            fail(context: context, "the connection closed during the handshake")
        case .open:
            inputEnded = true
            deliver(context: context)
        case .closed:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state == .idle || state == .handshaking {
            report(.failure(Failure(description: "the connection closed during the handshake")))
        }
        state = .closed
        timeout?.cancel()
        context.fireChannelInactive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        guard state == .open else {
            promise?.fail(Failure(description: "TLS is not established"))
            return
        }
        // An empty write asks only to hear when what is queued before it is written (the relay's drain).
        guard plaintext.readableBytes > 0 else {
            context.write(data, promise: promise)
            return
        }
        if case .failed(let reason) = connection.write(plaintext) {
            promise?.fail(Failure(description: reason))
            fail(context: context, reason)
            return
        }
        sendCiphertext(context: context, promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if state == .open && mode != .input {
            connection.shutdown()
            sendCiphertext(context: context, promise: nil)
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        let step = connection.handshake()
        // The handshake's answer, or the alert that says why it failed.
        sendCiphertext(context: context, promise: nil)
        context.flush()
        switch step {
        case .done:
            state = .open
            timeout?.cancel()
            report(.success(()))
        case .wantsInput:
            break
        case .closedByPeer:
            fail(context: context, "the connection closed during the handshake")
        case .failed(let reason):
            fail(context: context, reason)
        }
    }

    /// Hands on the plaintext that has arrived once the handlers behind want it, then the
    /// end of input if it came. Bounded: each read consumes buffered input.
    private func deliver(context: ChannelHandlerContext) {
        guard state == .open, readRequested else { return }
        var delivered = false
        reading: while connection.hasBufferedInput {
            let (plaintext, step) = connection.read(allocator: context.channel.allocator)
            switch step {
            case .done:
                if let plaintext {
                    delivered = true
                    context.fireChannelRead(wrapInboundOut(plaintext))
                }
            case .wantsInput:
                break reading
            case .closedByPeer:
                inputEnded = true
                break reading
            case .failed(let reason):
                fail(context: context, reason)
                return
            }
            guard state == .open else { return }
        }
        // TLS 1.3 sends session tickets and key updates after the handshake.
        sendCiphertext(context: context, promise: nil)
        context.flush()
        if delivered { context.fireChannelReadComplete() }
        if inputEnded && !inputClosedFired && state == .open {
            inputClosedFired = true
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
    }

    private func sendCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        if let ciphertext = connection.takeCiphertext(allocator: context.channel.allocator) {
            context.write(wrapOutboundOut(ciphertext), promise: promise)
        } else {
            promise?.succeed(())
        }
    }

    private func fail(context: ChannelHandlerContext, _ reason: String) {
        guard state != .closed else { return }
        let wasHandshaking = state != .open
        state = .closed
        timeout?.cancel()
        if wasHandshaking { report(.failure(Failure(description: reason))) }
        context.close(promise: nil)
    }

    private func report(_ result: Result<Void, Failure>) {
        established?(result)
        established = nil
    }
}
