import NIOCore
import VRRPCore

/// `sync listen ADDR:PORT peer ADDR:PORT [peer ADDR:PORT ...] key FILE`: the client table is
/// replicated between the nodes over TCP. Addresses are IP addresses, never host names, so a
/// node never waits on a resolver to know whom it accepts updates from.
public struct SyncSettings: Equatable, Sendable {
    /// An IP address and port of the sync channel.
    public struct Address: Equatable, Hashable, Sendable, CustomStringConvertible {
        public var ip: IPAddress
        public var port: Int

        public init(ip: IPAddress, port: Int) {
            self.ip = ip
            self.port = port
        }

        static func parse(_ text: String, what: String) throws -> Address {
            let (host, port) = try parseHostPort(text, what: what)
            guard let ip = IPAddress(host) else {
                throw ConfigurationError("sync: \(what) '\(text)' needs an IP address, not a host name")
            }
            return Address(ip: ip, port: port)
        }

        public var description: String { Endpoint.describe(host: ip.description, port: port) }
    }

    /// More peers than a pair or a small group of balancers ever has.
    public static let maxPeers = 16

    public var listen: Address
    public var peers: [Address]
    /// The file holding the shared HMAC key.
    public var keyFile: String

    public init(listen: Address, peers: [Address], keyFile: String) {
        self.listen = listen
        self.peers = peers
        self.keyFile = keyFile
    }

    /// The words after `sync`.
    public static func parse(_ words: [String]) throws -> SyncSettings {
        let usage = "'sync' needs 'listen ADDR:PORT peer ADDR:PORT [peer ADDR:PORT ...] key FILE'"
        var listen: Address?
        var peers: [Address] = []
        var keyFile: String?
        var index = 0
        while index < words.count {
            guard index + 1 < words.count else { throw ConfigurationError("sync: '\(words[index])' needs a value; \(usage)") }
            let value = words[index + 1]
            switch words[index] {
            case "listen":
                guard listen == nil else { throw ConfigurationError("sync: 'listen' is given twice") }
                listen = try Address.parse(value, what: "listen address")
            case "peer":
                let peer = try Address.parse(value, what: "peer address")
                guard !peers.contains(peer) else { throw ConfigurationError("sync: peer \(peer) is given twice") }
                guard peers.count < maxPeers else { throw ConfigurationError("sync: at most \(maxPeers) peers") }
                peers.append(peer)
            case "key":
                guard keyFile == nil else { throw ConfigurationError("sync: 'key' is given twice") }
                keyFile = value
            default:
                throw ConfigurationError("sync: unknown word '\(words[index])'; \(usage)")
            }
            index += 2
        }
        guard let listen, !peers.isEmpty, let keyFile else { throw ConfigurationError(usage) }
        guard !peers.contains(listen) else { throw ConfigurationError("sync: the node's own address \(listen) cannot be its peer") }
        return SyncSettings(listen: listen, peers: peers, keyFile: keyFile)
    }

    /// The command's arguments, as `parse` reads them back.
    public var words: [String] {
        ["listen", listen.description] + peers.flatMap { ["peer", $0.description] } + ["key", keyFile]
    }

    /// The configured peer a connection from `ip` comes from, if any: updates are accepted
    /// only from these (the port of an incoming connection is the peer's ephemeral one).
    public func isPeer(_ ip: IPAddress) -> Bool { peers.contains { $0.ip == ip } }
}
