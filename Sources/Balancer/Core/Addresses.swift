import NIOCore

extension Endpoint {
    /// Where penha listens: `port`, `host:port`, `[v6]:port`, pen's `:::port`, or a Unix socket path.
    public static func listenAddress(_ text: String) throws -> Endpoint {
        if text.contains("/") { return .unix(path: text) }
        if let port = Int(text) { return .inet(host: "0.0.0.0", port: try validPort(port, in: text)) }
        let (host, port) = try parseHostPort(text, what: "listen address")
        return .inet(host: host, port: port)
    }
}

/// `host:port`, `[v6]:port`, or with an unbracketed IPv6 host the last colon separates the
/// port (pen's `:::8080` is all IPv6 addresses, port 8080).
public func parseHostPort(_ text: String, what: String) throws -> (host: String, port: Int) {
    let host: Substring
    let portText: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]"),
              text[text.index(after: close)...].hasPrefix(":") else {
            throw ConfigurationError("bad \(what) '\(text)': expected [address]:port")
        }
        host = text[text.index(after: text.startIndex)..<close]
        portText = text[text.index(close, offsetBy: 2)...]
    } else {
        guard let colon = text.lastIndex(of: ":") else {
            throw ConfigurationError("bad \(what) '\(text)': expected host:port")
        }
        host = text[..<colon]
        portText = text[text.index(after: colon)...]
    }
    guard !host.isEmpty else { throw ConfigurationError("bad \(what) '\(text)': no host") }
    // A host with a ':' (or a bracket) can only be an IPv6 address: anything else would be
    // written back bracketed as text that does not parse (found by FuzzCommand).
    if host.contains(where: { $0 == ":" || $0 == "[" || $0 == "]" }), (try? SocketAddress(ipAddress: String(host), port: 0)) == nil {
        throw ConfigurationError("bad \(what) '\(text)': '\(host)' is not an IPv6 address")
    }
    guard let port = Int(portText) else {
        throw ConfigurationError("bad \(what) '\(text)': port '\(portText)' is not a number")
    }
    return (String(host), try validPort(port, in: text))
}

func validPort(_ port: Int, in text: String) throws -> Int {
    guard (1...65535).contains(port) else {
        throw ConfigurationError("bad port in '\(text)': \(port) is not within 1-65535")
    }
    return port
}

/// A backend as pen writes it: `host[:port[:maxc[:hard[:weight[:prio]]]]]`, host being a
/// name, an IPv4 address or a bracketed IPv6 address. The port defaults to the listen port.
public struct ServerSpec: Equatable, Sendable {
    /// The host as the operator wrote it (name or address), kept for `servers` and `write`.
    public var host: String {
        didSet { hostHash = MaglevTable.fnv1a(host, seed: 2) }
    }
    /// The host's hash, kept with it so that the two cannot differ: `maglev` looks at every
    /// server's for each new client.
    public private(set) var hostHash: UInt64
    public var port: Int
    /// Soft limit on simultaneous connections (pen's maxc); 0 means unlimited.
    public var maxConnections = 0
    /// Hard limit for returning clients once the soft limit is reached (pen's hard).
    public var hardLimit = 0
    /// Weight for `-W`; a server with weight 0 is never chosen by weight (pen).
    public var weight = 1
    /// Priority for `prio`: the lowest value wins.
    public var priority = 0
    /// `server N acl A`: clients this list refuses are not sent here (pen's default list 0).
    public var acl = 0
    /// `server N healthcheck off|on`: whether `healthcheck` checks this server.
    public var healthCheck = true
    /// `server N proxy_protocol v1|v2|off`: the PROXY protocol header sent to it first.
    public var proxyProtocol = ProxyProtocol.off

    public init(host: String, port: Int, maxConnections: Int = 0, hardLimit: Int = 0,
                weight: Int = 1, priority: Int = 0) {
        self.host = host
        hostHash = MaglevTable.fnv1a(host, seed: 2)
        self.port = port
        self.maxConnections = maxConnections
        self.hardLimit = hardLimit
        self.weight = weight
        self.priority = priority
    }

    /// A server's soft and hard connection limits.
    static let limitRange = 0...Limits.connections
    /// A server's weight and priority.
    static let weightRange = 0...Limits.weight

    /// `defaultPort` is the listen port; a Unix-socket listener has none, so ports are required.
    public static func parse(_ text: String, defaultPort: Int?) throws -> ServerSpec {
        let host: String
        let rest: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ConfigurationError("bad server '\(text)': missing ']' after the IPv6 address")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            rest = text[text.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else {
                throw ConfigurationError("bad server '\(text)': expected ':' after ']'")
            }
        } else {
            let colon = text.firstIndex(of: ":") ?? text.endIndex
            host = String(text[..<colon])
            rest = text[colon...]
        }
        guard !host.isEmpty else { throw ConfigurationError("bad server '\(text)': no host") }
        let fields = rest.isEmpty ? [] : rest.dropFirst().split(separator: ":", omittingEmptySubsequences: false)
        let names = [("port", 0...65535), ("maxc", limitRange), ("hard", limitRange), ("weight", weightRange),
                     ("prio", weightRange)]
        guard fields.count <= names.count else {
            throw ConfigurationError("bad server '\(text)': more than host:port:maxc:hard:weight:prio")
        }
        var numbers: [Int] = []
        for (field, (name, range)) in zip(fields, names) {
            guard let number = Int(field), number >= 0 else {
                throw ConfigurationError("bad server '\(text)': \(name) '\(field)' is not a non-negative number")
            }
            numbers.append(try boundedNumber(number, range, for: "bad server '\(text)': \(name)"))
        }
        guard let port = try numbers.first.map({ try validPort($0, in: text) }) ?? defaultPort else {
            throw ConfigurationError("bad server '\(text)': a port is needed when listening on a Unix socket")
        }
        var spec = ServerSpec(host: host, port: port)
        if numbers.count > 1 { spec.maxConnections = numbers[1] }
        if numbers.count > 2 { spec.hardLimit = numbers[2] }
        if numbers.count > 3 { spec.weight = numbers[3] }
        if numbers.count > 4 { spec.priority = numbers[4] }
        return spec
    }
}
