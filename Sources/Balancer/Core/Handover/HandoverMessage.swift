import VRRPCore

/// One direction of a connection as it moves to the new process: the bytes read from its
/// source and not yet written to its destination (in the order they are to be written), and
/// how far its end has got.
public struct HandedOverFlow: Equatable, Sendable {
    public var pending: [UInt8]
    /// The source sent its FIN: nothing more comes from it.
    public var sourceEnded: Bool
    /// The end was passed on (shutdown of the destination's writing).
    public var shutDown: Bool

    public init(pending: [UInt8] = [], sourceEnded: Bool = false, shutDown: Bool = false) {
        self.pending = pending
        self.sourceEnded = sourceEnded
        self.shutDown = shutDown
    }
}

/// One established, relaying connection as it moves: its client (as the client table and the
/// log know it: the PROXY protocol header's client when there was one), the server it was
/// placed on, when it was connected (monotonic nanoseconds: both processes read the same
/// clock), both directions, whether `-l` still waits for its first request, and whether its
/// requests get X-Forwarded-For (`-H`: it moves only between two requests, where the rewriter
/// has nothing held back, and the new process starts a fresh one). Its two
/// descriptors, client then server, travel beside it (SCM_RIGHTS).
public struct HandedOverConnection: Equatable, Sendable {
    /// `ClientKey.local` for a Unix-socket client.
    public var client: IPAddress
    public var clientPort: UInt16
    public var target: Target
    public var connectedAt: UInt64
    public var toServer: HandedOverFlow
    public var toClient: HandedOverFlow
    public var requestUnlogged: Bool
    public var rewritesForwardedFor: Bool

    public init(client: IPAddress, clientPort: UInt16, target: Target, connectedAt: UInt64, toServer: HandedOverFlow,
                toClient: HandedOverFlow, requestUnlogged: Bool, rewritesForwardedFor: Bool = false) {
        self.client = client
        self.clientPort = clientPort
        self.target = target
        self.connectedAt = connectedAt
        self.toServer = toServer
        self.toClient = toClient
        self.requestUnlogged = requestUnlogged
        self.rewritesForwardedFor = rewritesForwardedFor
    }
}

/// One client-table entry as it moves: the client, the server it used last (by index: both
/// processes run the same configuration), when (monotonic nanoseconds), and its counters.
public struct HandedOverClient: Equatable, Sendable {
    public var key: IPAddress
    public var server: Int?
    public var lastUsed: UInt64
    public var connections: UInt64
    public var sent: UInt64
    public var received: UInt64

    public init(key: IPAddress, server: Int?, lastUsed: UInt64, connections: UInt64, sent: UInt64, received: UInt64) {
        self.key = key
        self.server = server
        self.lastUsed = lastUsed
        self.connections = connections
        self.sent = sent
        self.received = received
    }

    /// Key 16, server 4, last use 8, three counters 24.
    static let encodedSize = 52
}

/// The counters as they move: the totals, and each server's by index (its connections so
/// far and the bytes it was sent and sent back).
public struct HandedOverCounters: Equatable, Sendable {
    public struct Server: Equatable, Sendable {
        public var connections: UInt64
        public var sent: UInt64
        public var received: UInt64

        public init(connections: UInt64, sent: UInt64, received: UInt64) {
            self.connections = connections
            self.sent = sent
            self.received = received
        }
    }

    public var connections: UInt64
    public var refusedClients: UInt64
    public var servers: [Server]

    public init(connections: UInt64, refusedClients: UInt64, servers: [Server]) {
        self.connections = connections
        self.refusedClients = refusedClients
        self.servers = servers
    }
}

/// The messages of a handover between two penha processes on one host, over a Unix socket
/// (`penha run --takeover`, `penha upgrade`). The old process sends `listener`, then its
/// client table (`clients`), its `connections` in batches and its `counters`, then `done`; the
/// new one answers `accepting` once it accepts on the listener and `adopted` once it relays
/// what it was given, and the old one ends with its VRRP instances (`vrrp`). `refused` ends
/// it, either way.
///
/// A frame is `magic(4) version(1) kind(1) descriptors(2) length(4) body`, big-endian; the
/// descriptors come with the frame's first bytes (SCM_RIGHTS) and their count is part of
/// what is checked. Every count and size is bounded, so a frame is refused before its body
/// is buffered, and the receiver never waits for more than one frame's bytes.
public enum HandoverMessage: Equatable, Sendable {
    /// The engine's listening socket (one descriptor).
    case listener
    /// The new process accepts on the listener: the old one stops.
    case accepting
    /// Established connections, two descriptors each.
    case connections([HandedOverConnection])
    /// Everything was sent.
    case done
    /// The new process relays what it was given: the old one exits.
    case adopted
    /// The sender cannot go on; the reason is for the log and the command's answer.
    case refused(String)
    /// Part of the client table, the most recently used first.
    case clients([HandedOverClient])
    /// The totals and the servers' counters, to add to the new process's own.
    case counters(HandedOverCounters)
    /// The VRRP instances, once the new process relays everything: the old one has stopped
    /// advertising, the new one goes on where it stood.
    case vrrp([VRRPResumption])
    /// The operator's `bgp withdraw` holds (sent before `done`, only then): the new process
    /// keeps the routes withdrawn until `bgp announce`.
    case bgpWithdrawn

    public static let magic: [UInt8] = Array("PNHO".utf8)
    public static let version: UInt8 = 1
    public static let headerSize = 12
    /// The kernel takes at most 253 descriptors per message (SCM_MAX_FD): 126 connections.
    public static let maxDescriptors = 252
    public static let maxConnections = maxDescriptors / 2
    /// Bytes one direction of a connection may have pending: a relay buffer (64 KiB) and what a
    /// transformation spilled beyond it, with room to spare; more is refused.
    public static let maxPendingBytes = 1 << 20
    /// A frame's body; a batch of connections is cut to stay below it.
    public static let maxBodySize = 8 << 20
    public static let maxReasonBytes = 1024

    /// A reason cut to `maxReasonBytes` of UTF-8 between two scalars, so that it reads back as itself.
    static func bounded(_ reason: String) -> String {
        var kept = String.UnicodeScalarView()
        var bytes = 0
        for scalar in reason.unicodeScalars {
            bytes += UTF8.width(scalar)
            guard bytes <= maxReasonBytes else { break }
            kept.append(scalar)
        }
        return String(kept)
    }
    /// A server's index: far beyond any farm; the new process checks it against its own table.
    public static let maxServerIndex = 1 << 20
    /// Client-table entries in one frame (5.2 MB): the table's million takes ten.
    public static let maxClients = 100_000
    /// Servers whose counters move (1.5 MB); any beyond start from zero.
    public static let maxServers = 1 << 16
    /// VRRP instances (one per VRID and family on an interface, far fewer in practice).
    public static let maxVRRPInstances = 255
    /// An interface's name (IFNAMSIZ less its NUL).
    public static let maxInterfaceName = 15
    /// A connection's fixed part: client 16 + port 2 + target 5 + connected 8 + flags 1 + two lengths 8.
    static let connectionFixedSize = 40

    /// The first line a new process sends on the control socket, before the command parser
    /// sees it (not a command: a command line could never carry descriptors), followed by the
    /// path of the Unix socket it listens on for the handover.
    public static let requestLine = "\(requestKeyword) \(version)"
    /// What a handover request of any version starts with.
    public static let requestKeyword = "PENHA-HANDOVER"

    var kind: UInt8 {
        switch self {
        case .listener: return 1
        case .accepting: return 2
        case .connections: return 3
        case .done: return 4
        case .adopted: return 5
        case .refused: return 6
        case .clients: return 7
        case .counters: return 8
        case .vrrp: return 9
        case .bgpWithdrawn: return 10
        }
    }

    /// The descriptors that go with the frame.
    public var descriptorCount: Int {
        switch self {
        case .listener: return 1
        case .connections(let connections): return connections.count * 2
        case .accepting, .done, .adopted, .refused, .clients, .counters, .vrrp, .bgpWithdrawn: return 0
        }
    }

    /// The size of one connection on the wire, to cut batches below `maxBodySize`.
    public static func encodedSize(of connection: HandedOverConnection) -> Int {
        connectionFixedSize + connection.toServer.pending.count + connection.toClient.pending.count
    }

    /// The whole frame. The caller keeps within the bounds (a batch of at most
    /// `maxConnections`, each direction at most `maxPendingBytes`, the body at most
    /// `maxBodySize`): breaking them is a programming error, as the receiver would refuse it.
    public func encoded() -> [UInt8] {
        var body: [UInt8] = []
        switch self {
        case .listener, .accepting, .done, .adopted, .bgpWithdrawn:
            break
        case .connections(let connections):
            precondition(connections.count <= Self.maxConnections, "a batch holds at most \(Self.maxConnections) connections")
            appendBigEndian(UInt16(connections.count), to: &body)
            for connection in connections { Self.append(connection, to: &body) }
        case .refused(let reason):
            body += Self.bounded(reason).utf8
        case .clients(let clients):
            precondition(clients.count <= Self.maxClients, "a frame holds at most \(Self.maxClients) clients")
            appendBigEndian(UInt32(clients.count), to: &body)
            for client in clients {
                appendBigEndian(client.key.high, to: &body)
                appendBigEndian(client.key.low, to: &body)
                appendBigEndian(client.server.map { UInt32($0) } ?? UInt32.max, to: &body)
                for number in [client.lastUsed, client.connections, client.sent, client.received] { appendBigEndian(number, to: &body) }
            }
        case .counters(let counters):
            precondition(counters.servers.count <= Self.maxServers, "at most \(Self.maxServers) servers' counters")
            appendBigEndian(counters.connections, to: &body)
            appendBigEndian(counters.refusedClients, to: &body)
            appendBigEndian(UInt32(counters.servers.count), to: &body)
            for server in counters.servers {
                for number in [server.connections, server.sent, server.received] { appendBigEndian(number, to: &body) }
            }
        case .vrrp(let instances):
            precondition(instances.count <= Self.maxVRRPInstances, "at most \(Self.maxVRRPInstances) VRRP instances")
            body.append(UInt8(instances.count))
            for instance in instances {
                let name = Array(instance.interface.utf8)
                precondition((1...Self.maxInterfaceName).contains(name.count), "an interface's name is 1 to 15 bytes")
                body += [instance.vrid, instance.family == .v4 ? 4 : 6, instance.isMaster ? 1 : 0]
                appendBigEndian(instance.nextAdvertisement?.nanoseconds ?? 0, to: &body)
                body.append(UInt8(name.count))
                body += name
            }
        }
        precondition(body.count <= Self.maxBodySize, "a handover frame's body is at most \(Self.maxBodySize) bytes")
        var frame = Self.magic
        frame.append(Self.version)
        frame.append(kind)
        appendBigEndian(UInt16(descriptorCount), to: &frame)
        appendBigEndian(UInt32(body.count), to: &frame)
        return frame + body
    }

    private static func append(_ connection: HandedOverConnection, to bytes: inout [UInt8]) {
        precondition(connection.toServer.pending.count <= maxPendingBytes && connection.toClient.pending.count <= maxPendingBytes,
                     "a direction holds at most \(maxPendingBytes) pending bytes")
        appendBigEndian(connection.client.high, to: &bytes)
        appendBigEndian(connection.client.low, to: &bytes)
        appendBigEndian(connection.clientPort, to: &bytes)
        switch connection.target {
        case .server(let index):
            bytes.append(0)
            appendBigEndian(UInt32(index), to: &bytes)
        case .emergency:
            bytes += [1, 0, 0, 0, 0]
        case .abuse:
            bytes += [2, 0, 0, 0, 0]
        }
        appendBigEndian(connection.connectedAt, to: &bytes)
        var flags: UInt8 = 0
        if connection.toServer.sourceEnded { flags |= 1 }
        if connection.toServer.shutDown { flags |= 2 }
        if connection.toClient.sourceEnded { flags |= 4 }
        if connection.toClient.shutDown { flags |= 8 }
        if connection.requestUnlogged { flags |= 16 }
        if connection.rewritesForwardedFor { flags |= 32 }
        bytes.append(flags)
        appendBigEndian(UInt32(connection.toServer.pending.count), to: &bytes)
        appendBigEndian(UInt32(connection.toClient.pending.count), to: &bytes)
        bytes += connection.toServer.pending
        bytes += connection.toClient.pending
    }
}

/// A frame's header, read before its body: what to read next and how many descriptors must
/// have come with it.
public struct HandoverFrameHeader: Equatable, Sendable {
    public let kind: UInt8
    public let descriptorCount: Int
    public let bodyLength: Int

    /// Checks everything the header alone can tell: the magic, the version, a known kind, the
    /// descriptor count and the body's length within their bounds.
    public init(_ bytes: some Collection<UInt8>) throws(HandoverError) {
        guard bytes.count == HandoverMessage.headerSize else { throw .malformed("a header of \(bytes.count) bytes") }
        let header = Array(bytes)
        guard Array(header[0..<4]) == HandoverMessage.magic else { throw .malformed("not a handover frame (bad magic)") }
        guard header[4] == HandoverMessage.version else { throw .version(header[4]) }
        kind = header[5]
        guard (1...10).contains(kind) else { throw .malformed("unknown kind \(kind)") }
        descriptorCount = Int(header[6]) << 8 | Int(header[7])
        guard descriptorCount <= HandoverMessage.maxDescriptors else { throw .tooLarge("\(descriptorCount) descriptors") }
        bodyLength = header[8..<12].reduce(0) { $0 << 8 | Int($1) }
        guard bodyLength <= HandoverMessage.maxBodySize else { throw .tooLarge("a body of \(bodyLength) bytes") }
    }
}

extension HandoverMessage {
    /// The message a frame carries, every field checked: `descriptors` is how many came with
    /// it, which must be what it says and what its kind takes.
    public static func decode(_ header: HandoverFrameHeader, body: ArraySlice<UInt8>,
                              descriptors: Int) throws(HandoverError) -> HandoverMessage {
        guard body.count == header.bodyLength else { throw .malformed("a body of \(body.count) bytes, \(header.bodyLength) announced") }
        guard descriptors == header.descriptorCount else {
            throw .malformed("\(descriptors) descriptors with a frame that announced \(header.descriptorCount)")
        }
        var reader = HandoverReader(bytes: body)
        let message: HandoverMessage
        switch header.kind {
        case 1: message = .listener
        case 2: message = .accepting
        case 3: message = .connections(try reader.connections())
        case 4: message = .done
        case 5: message = .adopted
        case 7: message = .clients(try reader.clients())
        case 8: message = .counters(try reader.counters())
        case 9: message = .vrrp(try reader.vrrpInstances())
        case 10: message = .bgpWithdrawn
        default:
            guard body.count <= maxReasonBytes else { throw .tooLarge("a reason of \(body.count) bytes") }
            // Bytes that are not UTF-8 become U+FFFD, three bytes each: bounded again.
            message = .refused(bounded(String(decoding: reader.take(body.count), as: UTF8.self)))
        }
        guard reader.isAtEnd else { throw .malformed("\(reader.remaining) bytes after the message") }
        guard message.descriptorCount == descriptors else {
            throw .malformed("\(descriptors) descriptors where the message takes \(message.descriptorCount)")
        }
        return message
    }
}

private struct HandoverReader {
    var bytes: ArraySlice<UInt8>
    var isAtEnd: Bool { bytes.isEmpty }
    var remaining: Int { bytes.count }

    /// At most what is left: callers check the length first.
    mutating func take(_ count: Int) -> ArraySlice<UInt8> {
        defer { bytes = bytes.dropFirst(count) }
        return bytes.prefix(count)
    }

    mutating func number<Number: FixedWidthInteger>(_: Number.Type) throws(HandoverError) -> Number {
        guard bytes.count >= MemoryLayout<Number>.size else { throw .malformed("a message cut short") }
        return take(MemoryLayout<Number>.size).reduce(0) { $0 << 8 | Number($1) }
    }

    mutating func connections() throws(HandoverError) -> [HandedOverConnection] {
        let count = Int(try number(UInt16.self))
        guard count <= HandoverMessage.maxConnections else { throw .tooLarge("\(count) connections in one batch") }
        // Each takes at least its fixed part: a count the bytes cannot hold is refused before anything is made.
        guard bytes.count >= count * HandoverMessage.connectionFixedSize else {
            throw .malformed("\(count) connections in \(bytes.count) bytes")
        }
        var connections: [HandedOverConnection] = []
        connections.reserveCapacity(count)
        for _ in 0..<count { connections.append(try connection()) }
        return connections
    }

    mutating func clients() throws(HandoverError) -> [HandedOverClient] {
        let count = Int(try number(UInt32.self))
        guard count <= HandoverMessage.maxClients else { throw .tooLarge("\(count) clients in one frame") }
        guard bytes.count == count * HandedOverClient.encodedSize else { throw .malformed("\(count) clients in \(bytes.count) bytes") }
        var clients: [HandedOverClient] = []
        clients.reserveCapacity(count)
        for _ in 0..<count {
            let key = IPAddress(high: try number(UInt64.self), low: try number(UInt64.self))
            let server = try number(UInt32.self)
            guard server == UInt32.max || server <= UInt32(HandoverMessage.maxServerIndex) else { throw .malformed("server \(server)") }
            clients.append(HandedOverClient(key: key, server: server == UInt32.max ? nil : Int(server), lastUsed: try number(UInt64.self),
                                            connections: try number(UInt64.self), sent: try number(UInt64.self),
                                            received: try number(UInt64.self)))
        }
        return clients
    }

    mutating func counters() throws(HandoverError) -> HandedOverCounters {
        let connections = try number(UInt64.self), refused = try number(UInt64.self)
        let count = Int(try number(UInt32.self))
        guard count <= HandoverMessage.maxServers else { throw .tooLarge("\(count) servers' counters") }
        guard bytes.count == count * 24 else { throw .malformed("\(count) servers' counters in \(bytes.count) bytes") }
        var servers: [HandedOverCounters.Server] = []
        servers.reserveCapacity(count)
        for _ in 0..<count {
            servers.append(HandedOverCounters.Server(connections: try number(UInt64.self), sent: try number(UInt64.self),
                                                     received: try number(UInt64.self)))
        }
        return HandedOverCounters(connections: connections, refusedClients: refused, servers: servers)
    }

    mutating func vrrpInstances() throws(HandoverError) -> [VRRPResumption] {
        let count = Int(try number(UInt8.self))
        var instances: [VRRPResumption] = []
        for _ in 0..<count {
            let vrid = try number(UInt8.self), family = try number(UInt8.self), master = try number(UInt8.self)
            let due = try number(UInt64.self)
            let length = Int(try number(UInt8.self))
            guard vrid > 0, family == 4 || family == 6, master <= 1, master == 1 || due == 0,
                  (1...HandoverMessage.maxInterfaceName).contains(length),
                  bytes.count >= length else {
                throw .malformed("VRRP instance \(vrid), family \(family), state \(master), a name of \(length) bytes")
            }
            let name = take(length)
            // What an interface's name may hold: no NUL, no '/', no space.
            guard !name.contains(where: { $0 <= 32 || $0 == UInt8(ascii: "/") || $0 >= 127 }) else {
                throw .malformed("an interface name that is not one")
            }
            instances.append(VRRPResumption(interface: String(decoding: name, as: UTF8.self), vrid: vrid, family: family == 4 ? .v4 : .v6,
                                            nextAdvertisement: master == 1 ? VRRPInstant(nanoseconds: due) : nil))
        }
        return instances
    }

    mutating func connection() throws(HandoverError) -> HandedOverConnection {
        let client = IPAddress(high: try number(UInt64.self), low: try number(UInt64.self))
        let clientPort = try number(UInt16.self)
        let targetKind = try number(UInt8.self)
        let index = try number(UInt32.self)
        let target: Target
        switch (targetKind, index) {
        case (0, let index) where index <= UInt32(HandoverMessage.maxServerIndex): target = .server(Int(index))
        case (1, 0): target = .emergency
        case (2, 0): target = .abuse
        default: throw .malformed("target \(targetKind) \(index)")
        }
        let connectedAt = try number(UInt64.self)
        let flags = try number(UInt8.self)
        guard flags & ~63 == 0 else { throw .malformed("unknown connection flags \(flags)") }
        // A direction passes its end on only after its source ended.
        guard flags & 3 != 2, flags & 12 != 8 else { throw .malformed("an end passed on before its source ended") }
        let toServerCount = Int(try number(UInt32.self)), toClientCount = Int(try number(UInt32.self))
        for count in [toServerCount, toClientCount] where count > HandoverMessage.maxPendingBytes {
            throw .tooLarge("\(count) pending bytes")
        }
        guard bytes.count >= toServerCount + toClientCount else { throw .malformed("a message cut short") }
        // Nothing can be pending once the end was passed on: it goes after the last byte.
        let toServer = HandedOverFlow(pending: Array(take(toServerCount)), sourceEnded: flags & 1 != 0, shutDown: flags & 2 != 0)
        let toClient = HandedOverFlow(pending: Array(take(toClientCount)), sourceEnded: flags & 4 != 0, shutDown: flags & 8 != 0)
        guard !(toServer.shutDown && !toServer.pending.isEmpty), !(toClient.shutDown && !toClient.pending.isEmpty) else {
            throw .malformed("bytes pending after the end was passed on")
        }
        return HandedOverConnection(client: client, clientPort: clientPort, target: target, connectedAt: connectedAt,
                                    toServer: toServer, toClient: toClient, requestUnlogged: flags & 16 != 0,
                                    rewritesForwardedFor: flags & 32 != 0)
    }
}

/// Why a handover stops; the old process serves on, and says this in its log and its answer.
public enum HandoverError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case tooLarge(String)
    /// The other process speaks another version: penha binaries too far apart.
    case version(UInt8)
    /// A message out of the handover's order.
    case unexpected(String)

    public var description: String {
        switch self {
        case .malformed(let what): return "malformed handover message: \(what)"
        case .tooLarge(let what): return "handover message too large: \(what)"
        case .version(let version):
            return "the other process speaks handover version \(version), this one \(HandoverMessage.version)"
        case .unexpected(let what): return "unexpected handover message: \(what)"
        }
    }
}
