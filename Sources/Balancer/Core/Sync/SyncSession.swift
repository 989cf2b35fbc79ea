/// One end of a sync connection, without the socket: it frames and seals the messages this
/// side sends and unframes, authenticates and orders the bytes the other side sends.
///
/// Each side opens with a hello carrying a fresh random nonce. Every later frame's
/// HMAC-SHA-256 covers both nonces (the receiver's first) and a sequence number that starts
/// at 1 and goes up by one, so a frame replayed from another connection, or within this one,
/// or reordered, fails; a peer without the key cannot produce any frame after its hello. The
/// MAC is given as a function (the I/O computes it with libcrypto), which keeps this core
/// free of OpenSSL and lets the tests count and corrupt.
public struct SyncSession: Sendable {
    public typealias MAC = @Sendable ([UInt8]) -> [UInt8]

    private let mac: MAC
    private let ownNonce: [UInt8]
    public private(set) var peerNonce: [UInt8]?
    private var nextSendSequence: UInt64 = 1
    private var nextReceiveSequence: UInt64 = 1
    private var buffer: [UInt8] = []

    public init(nonce: [UInt8], mac: @escaping MAC) {
        precondition(nonce.count == SyncMessage.nonceSize, "a sync nonce has \(SyncMessage.nonceSize) bytes")
        ownNonce = nonce
        self.mac = mac
    }

    /// The peer's hello has been received and authenticated: this side may send.
    public var isReady: Bool { peerNonce != nil }

    /// This side's first frame.
    public func hello() -> [UInt8] {
        frame(.hello(nonce: ownNonce), sequence: 0, context: Self.helloContext)
    }

    /// A message after the hellos, framed and sealed. Only once `isReady`.
    public mutating func seal(_ message: SyncMessage) -> [UInt8] {
        guard let peerNonce else { preconditionFailure("sealing before the peer's hello") }
        defer { nextSendSequence += 1 }
        return frame(message, sequence: nextSendSequence, context: peerNonce + ownNonce)
    }

    /// Takes the bytes received and returns the messages they complete, the peer's hello
    /// excepted (it only makes the session ready). Any error ends the connection: a stream
    /// that failed once cannot be trusted to be back in step.
    public mutating func receive(_ bytes: some Collection<UInt8>) throws -> [SyncMessage] {
        buffer += bytes
        var messages: [SyncMessage] = []
        var start = 0
        defer { buffer.removeFirst(start) }
        while buffer.count - start >= 4 {
            let length = buffer[start..<start + 4].reduce(0) { $0 << 8 | Int($1) }
            let frameSize = 4 + length
            guard frameSize <= SyncMessage.maxFrameSize else { throw SyncProtocolError.tooLarge(frameSize) }
            guard frameSize >= SyncMessage.headerSize + SyncMessage.macSize else {
                throw SyncProtocolError.malformed("a frame of \(frameSize) bytes")
            }
            guard buffer.count - start >= frameSize else { break }
            if let message = try unseal(buffer[start..<start + frameSize]) { messages.append(message) }
            start += frameSize
        }
        return messages
    }

    private mutating func unseal(_ frame: ArraySlice<UInt8>) throws -> SyncMessage? {
        let base = frame.startIndex
        let type = frame[base + 4]
        let sequence = frame[base + 5..<base + 13].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let sealed = frame.dropLast(SyncMessage.macSize)
        let context: [UInt8]
        if let peerNonce {
            guard type != 1 else { throw SyncProtocolError.unexpected("second hello") }
            context = ownNonce + peerNonce
        } else {
            guard type == 1 else { throw SyncProtocolError.unexpected("message before the hello") }
            context = Self.helloContext
        }
        guard Self.equalInConstantTime(mac(context + sealed), frame.suffix(SyncMessage.macSize)) else {
            throw SyncProtocolError.authenticationFailed
        }
        let expected = peerNonce == nil ? 0 : nextReceiveSequence
        guard sequence == expected else { throw SyncProtocolError.badSequence(expected: expected, got: sequence) }
        let message = try SyncMessage.decode(type: type, body: sealed.dropFirst(SyncMessage.headerSize))
        if case .hello(let nonce) = message {
            peerNonce = nonce
            return nil
        }
        nextReceiveSequence += 1
        return message
    }

    private func frame(_ message: SyncMessage, sequence: UInt64, context: [UInt8]) -> [UInt8] {
        let body = message.body
        var bytes: [UInt8] = []
        bytes.reserveCapacity(SyncMessage.headerSize + body.count + SyncMessage.macSize)
        appendBigEndian(UInt32(1 + 8 + body.count + SyncMessage.macSize), to: &bytes)
        bytes.append(message.type)
        appendBigEndian(sequence, to: &bytes)
        bytes += body
        bytes += mac(context + bytes)
        return bytes
    }

    /// A hello is sealed before either nonce is known.
    private static let helloContext = [UInt8](repeating: 0, count: 2 * SyncMessage.nonceSize)

    /// So that the time a comparison takes tells an attacker nothing about how much matched.
    static func equalInConstantTime(_ a: [UInt8], _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
