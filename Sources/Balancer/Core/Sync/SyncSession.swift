/// Which end of a sync connection a session is: the initiator connects (and sends the
/// table), the responder accepts.
public enum SyncRole: Sendable {
    case initiator
    case responder
}

/// One end of a sync connection, without the socket: it runs the handshake, frames and seals
/// the messages this side sends, and unframes, authenticates and orders the bytes the other
/// side sends. A value: bytes in, what to do out.
///
/// The handshake (protocol version 2) is a challenge and response each way:
/// 1. the initiator sends its hello: its node and a fresh nonce;
/// 2. the responder answers with its hello, whose MAC covers the initiator's nonce: only a
///    holder of the key can make it for this connection, so it proves the key to the initiator;
/// 3. the initiator sends a proof, whose MAC covers both nonces: it proves the key to the responder.
///
/// Every MAC (HMAC-SHA-256 under the shared key) covers a context naming the frame's kind and
/// direction (initiator to responder or back) and the nonces known at that point, then the
/// frame with its sequence number (0 for the hello, then up by one per frame each way). So a
/// hello or frame sent back to the side that made it fails (its direction is the other one),
/// one replayed from an earlier connection fails (the nonces differ), one replayed or
/// reordered within the connection fails (its sequence number), and a node whose own hello is
/// relayed to its other end (its outgoing connection fed into its incoming one) knows its node
/// in it and refuses it. The MAC is given as a function (the I/O computes it with libcrypto),
/// which keeps this core free of OpenSSL and lets the tests and the fuzzer choose it.
public struct SyncSession: Sendable {
    public typealias MAC = @Sendable ([UInt8]) -> [UInt8]

    /// What one `receive` asks of the caller.
    public struct Output: Equatable, Sendable {
        /// To be written to the peer first: the responder's hello, the initiator's proof.
        public var reply: [UInt8] = []
        /// The peer proved the key with these bytes: from now on `isEstablished`.
        public var proven = false
        /// The messages these bytes completed, in order.
        public var messages: [SyncMessage] = []
    }

    /// Both nonces, the initiator's first: what every frame after the hellos is sealed over.
    private struct Nonces {
        var initiator: [UInt8]
        var responder: [UInt8]
    }

    private enum State {
        /// The initiator has sent its hello; the responder's must answer its nonce.
        case awaitingResponderHello
        /// The responder waits for the initiator's hello, and only then speaks.
        case awaitingInitiatorHello
        /// The responder has answered; the initiator must prove the key over both nonces.
        case awaitingProof(Nonces)
        /// The peer has proven the key: messages flow.
        case established(Nonces)
        /// A frame was refused: nothing more is read, the connection is to be closed.
        case failed(SyncProtocolError)
    }

    /// What a MAC is taken over, besides the frame: its kind and direction, and the nonces
    /// known when it is made.
    private enum Context {
        case initiatorHello
        case responderHello(initiatorNonce: [UInt8])
        case frame(from: SyncRole, Nonces)

        var bytes: [UInt8] {
            var bytes = Array("penha sync 2".utf8)
            switch self {
            case .initiatorHello:
                bytes.append(1)
            case .responderHello(let initiatorNonce):
                bytes.append(2)
                bytes += initiatorNonce
            case .frame(let from, let nonces):
                bytes.append(from == .initiator ? 3 : 4)
                bytes += nonces.initiator + nonces.responder
            }
            return bytes
        }
    }

    public let role: SyncRole
    private let own: SyncHello
    private let mac: MAC
    private var state: State
    private var nextSendSequence: UInt64 = 0
    private var nextReceiveSequence: UInt64 = 0
    private var buffer: [UInt8] = []

    private init(role: SyncRole, own: SyncHello, mac: @escaping MAC) {
        self.role = role
        self.own = own
        self.mac = mac
        state = role == .initiator ? .awaitingResponderHello : .awaitingInitiatorHello
    }

    /// The connecting end, and its hello, to be written first.
    public static func initiator(_ own: SyncHello, mac: @escaping MAC) -> (session: SyncSession, hello: [UInt8]) {
        var session = SyncSession(role: .initiator, own: own, mac: mac)
        let hello = session.frame(.hello(own), context: .initiatorHello)
        return (session, hello)
    }

    /// The accepting end: it says nothing until the initiator's hello.
    public static func responder(_ own: SyncHello, mac: @escaping MAC) -> SyncSession {
        SyncSession(role: .responder, own: own, mac: mac)
    }

    /// The peer has proven the key: this side may seal messages.
    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// A message, framed and sealed. Only once `isEstablished`.
    public mutating func seal(_ message: SyncMessage) -> [UInt8] {
        guard case .established(let nonces) = state else { preconditionFailure("sealing before the peer proved the key") }
        return frame(.message(message), context: .frame(from: role, nonces))
    }

    /// Takes the bytes received and returns what to do about them. Any error ends the
    /// connection (and every later call throws it again): a stream that failed once cannot
    /// be trusted to be back in step.
    public mutating func receive(_ bytes: some Collection<UInt8>) throws(SyncProtocolError) -> Output {
        if case .failed(let error) = state { throw error }
        do {
            return try receiveFrames(bytes)
        } catch {
            state = .failed(error)
            buffer = []
            throw error
        }
    }

    private mutating func receiveFrames(_ bytes: some Collection<UInt8>) throws(SyncProtocolError) -> Output {
        buffer += bytes
        var output = Output()
        var start = 0
        defer { buffer.removeFirst(start) }
        while buffer.count - start >= 4 {
            let length = buffer[start..<start + 4].reduce(0) { $0 << 8 | Int($1) }
            let frameSize = 4 + length
            guard frameSize <= SyncMessage.maxFrameSize else { throw .tooLarge(frameSize) }
            guard frameSize >= SyncMessage.headerSize + SyncMessage.macSize else { throw .malformed("a frame of \(frameSize) bytes") }
            guard buffer.count - start >= frameSize else { break }
            try receive(frame: buffer[start..<start + frameSize], into: &output)
            start += frameSize
        }
        return output
    }

    /// One whole frame: decoded, checked against the state, authenticated, acted on.
    private mutating func receive(frame bytes: ArraySlice<UInt8>, into output: inout Output) throws(SyncProtocolError) {
        let base = bytes.startIndex
        let content = try SyncFrame.decode(type: bytes[base + 4],
                                           body: bytes[(base + SyncMessage.headerSize)..<(bytes.endIndex - SyncMessage.macSize)])
        switch (state, content) {
        case (.awaitingResponderHello, .hello(let hello)):
            try authenticate(bytes, context: .responderHello(initiatorNonce: own.nonce))
            try refuseOwn(hello)
            let nonces = Nonces(initiator: own.nonce, responder: hello.nonce)
            state = .established(nonces)
            output.proven = true
            output.reply += frame(.proof, context: .frame(from: .initiator, nonces))
        case (.awaitingInitiatorHello, .hello(let hello)):
            try authenticate(bytes, context: .initiatorHello)
            try refuseOwn(hello)
            state = .awaitingProof(Nonces(initiator: hello.nonce, responder: own.nonce))
            output.reply += frame(.hello(own), context: .responderHello(initiatorNonce: hello.nonce))
        case (.awaitingProof(let nonces), .proof):
            try authenticate(bytes, context: .frame(from: .initiator, nonces))
            state = .established(nonces)
            output.proven = true
        case (.established(let nonces), .message(let message)):
            try authenticate(bytes, context: .frame(from: role == .initiator ? .responder : .initiator, nonces))
            output.messages.append(message)
        case (_, _):
            throw .unexpected("\(content.name) where \(expected) was due")
        }
    }

    /// For error messages.
    private var expected: String {
        switch state {
        case .awaitingResponderHello, .awaitingInitiatorHello: return "a hello"
        case .awaitingProof: return "the proof"
        case .established, .failed: return "a message"
        }
    }

    /// The MAC, then the sequence number: a frame is the next one of this direction, from a
    /// holder of the key, for this connection.
    private mutating func authenticate(_ frame: ArraySlice<UInt8>, context: Context) throws(SyncProtocolError) {
        let sealed = frame.dropLast(SyncMessage.macSize)
        guard Self.equalInConstantTime(mac(context.bytes + sealed), frame.suffix(SyncMessage.macSize)) else {
            throw .authenticationFailed
        }
        let base = frame.startIndex
        let sequence = frame[base + 5..<base + 13].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard sequence == nextReceiveSequence else { throw .badSequence(expected: nextReceiveSequence, got: sequence) }
        nextReceiveSequence += 1
    }

    private func refuseOwn(_ hello: SyncHello) throws(SyncProtocolError) {
        guard hello.node != own.node else { throw .ownHello }
    }

    private mutating func frame(_ content: SyncFrame, context: Context) -> [UInt8] {
        let body = content.body
        var bytes: [UInt8] = []
        bytes.reserveCapacity(SyncMessage.headerSize + body.count + SyncMessage.macSize)
        appendBigEndian(UInt32(1 + 8 + body.count + SyncMessage.macSize), to: &bytes)
        bytes.append(content.type)
        appendBigEndian(nextSendSequence, to: &bytes)
        bytes += body
        bytes += mac(context.bytes + bytes)
        nextSendSequence += 1
        return bytes
    }

    /// So that the time a comparison takes tells an attacker nothing about how much matched.
    static func equalInConstantTime(_ a: [UInt8], _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
