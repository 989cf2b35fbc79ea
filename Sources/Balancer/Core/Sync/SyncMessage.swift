import VRRPCore

/// One client-table entry on the sync wire: the client, its server by address and port (the
/// peers' server lists may be ordered differently, so never by index) and how long ago the
/// client last used it (an age, not a time: the nodes' clocks need not agree).
public struct SyncEntry: Equatable, Hashable, Sendable {
    public var client: IPAddress
    public var server: SyncSettings.Address
    public var ageMilliseconds: UInt32

    public init(client: IPAddress, server: SyncSettings.Address, ageMilliseconds: UInt32) {
        self.client = client
        self.server = server
        self.ageMilliseconds = ageMilliseconds
    }

    /// 16 bytes of client, 16 of server address, 2 of port, 4 of age.
    static let encodedSize = 38
}

/// The messages of the sync channel, what the sending node sends after the handshake
/// (`SyncSession`). Frames are `length(4) type(1) sequence(8) body MAC(32)`, big-endian, the
/// length counting what follows it.
public enum SyncMessage: Equatable, Sendable {
    /// Part of a full copy of the table; the first part starts it, the last ends it.
    case fullCopy(first: Bool, last: Bool, entries: [SyncEntry])
    /// Changes since the last batch, coalesced per client.
    case updates([SyncEntry])

    /// The version of the handshake and frames: 2 binds both nonces and the direction into
    /// every MAC. Version 1 (a hello of a bare nonce, sealed with no context) is refused:
    /// both nodes run the same version.
    public static let protocolVersion: UInt8 = 2
    public static let nonceSize = 16
    public static let macSize = 32
    /// Entries in one message: a frame stays under 40 KB.
    public static let maxEntries = 1000
    static let headerSize = 4 + 1 + 8
    /// The largest frame `SyncSession` accepts; a longer length is refused before anything is buffered.
    public static let maxFrameSize = headerSize + 3 + maxEntries * SyncEntry.encodedSize + macSize

    fileprivate func append(to bytes: inout [UInt8]) {
        switch self {
        case .fullCopy(let first, let last, let entries):
            bytes.append((first ? 1 : 0) | (last ? 2 : 0))
            Self.append(entries, to: &bytes)
        case .updates(let entries):
            Self.append(entries, to: &bytes)
        }
    }

    private static func append(_ entries: [SyncEntry], to bytes: inout [UInt8]) {
        precondition(entries.count <= maxEntries, "a sync message holds at most \(maxEntries) entries")
        bytes.reserveCapacity(bytes.count + 2 + entries.count * SyncEntry.encodedSize)
        appendBigEndian(UInt16(entries.count), to: &bytes)
        for entry in entries {
            appendAddress(entry.client, to: &bytes)
            appendAddress(entry.server.ip, to: &bytes)
            appendBigEndian(UInt16(entry.server.port), to: &bytes)
            appendBigEndian(entry.ageMilliseconds, to: &bytes)
        }
    }

    /// Always 16 bytes, IPv4 as IPv4-mapped IPv6.
    private static func appendAddress(_ address: IPAddress, to bytes: inout [UInt8]) {
        appendBigEndian(address.high, to: &bytes)
        appendBigEndian(address.low, to: &bytes)
    }
}

/// The first frame each way: which node sends it (a random identity per sync run, so that a
/// node knows its own hello when it comes back) and a fresh nonce.
public struct SyncHello: Equatable, Sendable {
    public var node: [UInt8]
    public var nonce: [UInt8]

    public init(node: [UInt8], nonce: [UInt8]) {
        precondition(node.count == Self.nodeSize && nonce.count == SyncMessage.nonceSize, "a sync hello has a 16-byte node and nonce")
        self.node = node
        self.nonce = nonce
    }

    public static let nodeSize = 16
    /// The protocol version, the node, the nonce.
    static let encodedSize = 1 + nodeSize + SyncMessage.nonceSize
    /// Version 1's hello was its nonce alone.
    static let version1Size = SyncMessage.nonceSize
}

/// Everything a frame can carry: the handshake's two frames, then messages.
enum SyncFrame: Equatable {
    case hello(SyncHello)
    /// The initiator's answer to the responder's hello: no body, its MAC over both nonces is
    /// the proof that it holds the key.
    case proof
    case message(SyncMessage)

    var type: UInt8 {
        switch self {
        case .hello: return 1
        case .message(.fullCopy): return 2
        case .message(.updates): return 3
        case .proof: return 4
        }
    }

    /// For error messages.
    var name: String {
        switch self {
        case .hello: return "a hello"
        case .proof: return "a proof"
        case .message: return "a message"
        }
    }

    var body: [UInt8] {
        var bytes: [UInt8] = []
        switch self {
        case .hello(let hello):
            bytes.append(SyncMessage.protocolVersion)
            bytes += hello.node
            bytes += hello.nonce
        case .proof:
            break
        case .message(let message):
            message.append(to: &bytes)
        }
        return bytes
    }

    static func decode(type: UInt8, body: ArraySlice<UInt8>) throws(SyncProtocolError) -> SyncFrame {
        var reader = Reader(bytes: body)
        let frame: SyncFrame
        switch type {
        case 1:
            // The version first, so that a node of another version is told so, not that its MAC fails.
            guard body.count != SyncHello.version1Size else { throw SyncProtocolError.version(1) }
            let version = try reader.byte()
            guard version == SyncMessage.protocolVersion else { throw SyncProtocolError.version(version) }
            guard body.count == SyncHello.encodedSize else { throw SyncProtocolError.malformed("a hello of \(body.count) bytes") }
            frame = .hello(SyncHello(node: Array(try reader.take(SyncHello.nodeSize)),
                                     nonce: Array(try reader.take(SyncMessage.nonceSize))))
        case 2:
            let flags = try reader.byte()
            guard flags & ~3 == 0 else { throw SyncProtocolError.malformed("unknown full-copy flags \(flags)") }
            frame = .message(.fullCopy(first: flags & 1 != 0, last: flags & 2 != 0, entries: try reader.entries()))
        case 3:
            frame = .message(.updates(try reader.entries()))
        case 4:
            frame = .proof
        default:
            throw SyncProtocolError.malformed("unknown message type \(type)")
        }
        guard reader.isAtEnd else { throw SyncProtocolError.malformed("\(reader.remaining) bytes after the message") }
        return frame
    }

    private struct Reader {
        var bytes: ArraySlice<UInt8>
        var isAtEnd: Bool { bytes.isEmpty }
        var remaining: Int { bytes.count }

        mutating func take(_ count: Int) throws(SyncProtocolError) -> ArraySlice<UInt8> {
            guard bytes.count >= count else { throw SyncProtocolError.malformed("a message cut short") }
            defer { bytes = bytes.dropFirst(count) }
            return bytes.prefix(count)
        }

        mutating func byte() throws(SyncProtocolError) -> UInt8 {
            guard let byte = bytes.popFirst() else { throw SyncProtocolError.malformed("a message cut short") }
            return byte
        }

        mutating func number<Number: FixedWidthInteger>(_: Number.Type) throws(SyncProtocolError) -> Number {
            try take(MemoryLayout<Number>.size).reduce(0) { $0 << 8 | Number($1) }
        }

        mutating func address() throws(SyncProtocolError) -> IPAddress {
            IPAddress(high: try number(UInt64.self), low: try number(UInt64.self))
        }

        mutating func entries() throws(SyncProtocolError) -> [SyncEntry] {
            let count = Int(try number(UInt16.self))
            guard count <= SyncMessage.maxEntries else { throw SyncProtocolError.malformed("\(count) entries in one message") }
            guard bytes.count == count * SyncEntry.encodedSize else {
                throw SyncProtocolError.malformed("\(count) entries in \(bytes.count) bytes")
            }
            var entries: [SyncEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let client = try address()
                let server = try address()
                let port = Int(try number(UInt16.self))
                guard port > 0 else { throw SyncProtocolError.malformed("server port 0") }
                entries.append(SyncEntry(client: client, server: SyncSettings.Address(ip: server, port: port),
                                         ageMilliseconds: try number(UInt32.self)))
            }
            return entries
        }
    }
}

func appendBigEndian<Number: FixedWidthInteger>(_ value: Number, to bytes: inout [UInt8]) {
    for shift in stride(from: Number.bitWidth - 8, through: 0, by: -8) {
        bytes.append(UInt8(truncatingIfNeeded: value >> shift))
    }
}

/// Why a sync connection is dropped.
public enum SyncProtocolError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    /// The MAC does not match: the peer does not hold the key, or the bytes were changed.
    case authenticationFailed
    /// A sequence number out of order: a replayed, dropped or reordered message.
    case badSequence(expected: UInt64, got: UInt64)
    case tooLarge(Int)
    /// A frame out of the handshake's order: a message before the proof, a second hello.
    case unexpected(String)
    /// The node's own hello came back: reflected or relayed, not from the peer.
    case ownHello
    /// The peer speaks another version of the protocol.
    case version(UInt8)

    public var description: String {
        switch self {
        case .malformed(let what): return "malformed message: \(what)"
        case .authenticationFailed: return "authentication failed (wrong key?)"
        case .badSequence(let expected, let got): return "message \(got) where \(expected) was due (replayed or reordered)"
        case .tooLarge(let length): return "a frame of \(length) bytes, more than \(SyncMessage.maxFrameSize)"
        case .unexpected(let what): return "unexpected \(what)"
        case .ownHello: return "the node's own hello came back (reflected or relayed: not the peer)"
        case .version(let version):
            return "the peer speaks sync protocol version \(version), this node \(SyncMessage.protocolVersion): upgrade both nodes"
        }
    }
}
