/// `server N [acl A] [address A] [port P] [max M] [hard H] [weight W] [prio P] [blacklist T]
/// [healthcheck on|off] [proxy_protocol v1|v2|off]`: what
/// the command changes in server N; fields it does not name stay as they are.
public struct ServerChange: Equatable, Sendable {
    public var index: Int
    /// A host name or IP address (an IPv6 address may be bracketed).
    public var address: String?
    public var port: Int?
    public var maxConnections: Int?
    public var hardLimit: Int?
    public var weight: Int?
    public var priority: Int?
    /// Leave the server out for this many seconds; 0 takes it back at once. Running state,
    /// not configuration: only the control socket and a reload apply it.
    public var blacklistSeconds: Int?
    /// The access list a client must pass to be sent to this server.
    public var acl: Int?
    /// `healthcheck on|off`: whether the health checks check this server.
    public var healthCheck: Bool?
    /// `proxy_protocol v1|v2|off`: the PROXY protocol header sent to this server first.
    public var proxyProtocol: ProxyProtocol?

    public init(index: Int, address: String? = nil, port: Int? = nil, maxConnections: Int? = nil,
                hardLimit: Int? = nil, weight: Int? = nil, priority: Int? = nil, blacklistSeconds: Int? = nil,
                acl: Int? = nil, healthCheck: Bool? = nil, proxyProtocol: ProxyProtocol? = nil) {
        self.index = index
        self.address = address
        self.port = port
        self.maxConnections = maxConnections
        self.hardLimit = hardLimit
        self.weight = weight
        self.priority = priority
        self.blacklistSeconds = blacklistSeconds
        self.acl = acl
        self.healthCheck = healthCheck
        self.proxyProtocol = proxyProtocol
    }

    /// Each field's bounds; the port's are validPort's, checked after (its message names the range).
    private static let numberFields: [(name: String, field: WritableKeyPath<ServerChange, Int?> & Sendable,
                                       range: ClosedRange<Int>)] = [
        ("port", \.port, 0...Int.max), ("max", \.maxConnections, ServerSpec.limitRange),
        ("hard", \.hardLimit, ServerSpec.limitRange), ("weight", \.weight, ServerSpec.weightRange),
        ("prio", \.priority, ServerSpec.weightRange), ("blacklist", \.blacklistSeconds, 0...Limits.seconds),
    ]

    /// The words after `server`.
    static func parse(_ words: [String]) throws -> ServerChange {
        let usage = "'server' needs a number and pairs of: address A, port P, max M, hard H, weight W, prio P, "
            + "blacklist T, acl L, healthcheck on|off, proxy_protocol v1|v2|off"
        guard let first = words.first, words.count >= 3, words.count % 2 == 1 else { throw ConfigurationError(usage) }
        var change = ServerChange(index: try nonNegativeNumber(first, for: "'server'"))
        var seen: Set<String> = []
        for pair in stride(from: 1, to: words.count, by: 2) {
            let (name, value) = (words[pair], words[pair + 1])
            guard seen.insert(name).inserted else { throw ConfigurationError("server: '\(name)' given twice") }
            if name == "address" {
                let bracketed = value.hasPrefix("[") && value.hasSuffix("]") && value.count > 2
                change.address = bracketed ? String(value.dropFirst().dropLast()) : value
            } else if let number = numberFields.first(where: { $0.name == name }) {
                let what = "server: '\(name)'"
                change[keyPath: number.field] = try boundedNumber(nonNegativeNumber(value, for: what), number.range, for: what)
            } else if name == "acl" {
                change.acl = try AccessLists.listNumber(value)
            } else if name == "healthcheck" {
                guard value == "on" || value == "off" else {
                    throw ConfigurationError("server: 'healthcheck' takes on or off, not '\(value)'")
                }
                change.healthCheck = value == "on"
            } else if name == "proxy_protocol" {
                guard let version = ProxyProtocol(rawValue: value) else {
                    throw ConfigurationError("server: 'proxy_protocol' takes v1, v2 or off, not '\(value)'")
                }
                change.proxyProtocol = version
            } else {
                throw ConfigurationError("server: unknown field '\(name)'; \(usage)")
            }
        }
        if let port = change.port { _ = try validPort(port, in: "server \(change.index) port \(port)") }
        return change
    }

    /// The words after `server`, in a fixed order.
    var words: [String] {
        var words = ["\(index)"]
        if let address { words += ["address", address] }
        for (name, field, _) in Self.numberFields {
            if let value = self[keyPath: field] { words += [name, "\(value)"] }
        }
        if let acl { words += ["acl", "\(acl)"] }
        if let healthCheck { words += ["healthcheck", healthCheck ? "on" : "off"] }
        if let proxyProtocol { words += ["proxy_protocol", proxyProtocol.rawValue] }
        return words
    }

    /// The change that makes server `index` what `spec` says: what `write` saves.
    init(index: Int, recreating spec: ServerSpec) {
        self.init(index: index, address: spec.host, port: spec.port, maxConnections: spec.maxConnections,
                  hardLimit: spec.hardLimit, weight: spec.weight, priority: spec.priority, acl: spec.acl,
                  healthCheck: spec.healthCheck, proxyProtocol: spec.proxyProtocol == .off ? nil : spec.proxyProtocol)
    }

    /// The change applied to a server's configuration (all but the blacklist, which is state).
    func apply(to spec: inout ServerSpec) {
        if let address { spec.host = address }
        if let port { spec.port = port }
        if let maxConnections { spec.maxConnections = maxConnections }
        if let hardLimit { spec.hardLimit = hardLimit }
        if let weight { spec.weight = weight }
        if let priority { spec.priority = priority }
        if let acl { spec.acl = acl }
        if let healthCheck { spec.healthCheck = healthCheck }
        if let proxyProtocol { spec.proxyProtocol = proxyProtocol }
    }
}
