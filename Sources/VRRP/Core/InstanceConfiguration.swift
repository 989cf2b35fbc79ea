/// One `vrrp` command of pen's command language:
/// `vrrp interface IF vrid N priority P vip ADDR/LEN [vip ADDR/LEN ...] [advert 1s|100ms]
///  [version 3|2] [preempt on|off] [preempt_delay SEC] [peer IP ...] [auth PASS]
///  [track_servers MIN [weight W]] [notify PATH] [second_chance PEER]`
public struct VRRPInstanceConfiguration: Equatable, Sendable {
    /// Health coupling: while fewer than `minimum` servers are available, advertise
    /// `weight` less than the configured priority.
    public struct ServerTracking: Equatable, Sendable {
        public var minimum: Int
        public var weight: Int
    }

    public var interface: String
    public var vrid: UInt8
    public var priority: UInt8
    public var virtualAddresses: [VirtualAddress]
    /// Centiseconds.
    public var advertisementInterval: UInt16 = 100
    public var version: VRRPConfiguration.Version = .v3
    public var preempt = true
    /// Seconds.
    public var preemptDelay: UInt16?
    /// Unicast peers; empty means multicast.
    public var peers: [IPAddress] = []
    /// Version 2 simple-text authentication.
    public var password: String?
    public var serverTracking: ServerTracking?
    /// Run on every transition with the new state as its argument.
    public var notify: String?
    /// Established connections survive a switchover with PEER (`SecondChance`).
    public var secondChance: SecondChance?

    public var family: IPAddress.Family { virtualAddresses.first?.address.family ?? .v4 }

    /// The words after `vrrp`.
    public static func parse(_ words: [String]) throws -> VRRPInstanceConfiguration {
        var reader = WordReader(words: words)
        var interface: String?, vrid: UInt8?, priority: UInt8?
        var virtualAddresses: [VirtualAddress] = []
        var advertisement: String?
        var configuration = VRRPInstanceConfiguration(interface: "", vrid: 1, priority: 1, virtualAddresses: [])
        while let keyword = reader.next() {
            switch keyword {
            case "interface": interface = try reader.value(for: keyword)
            case "vrid": vrid = UInt8(try reader.number(for: keyword, in: 1...255))
            case "priority": priority = UInt8(try reader.number(for: keyword, in: 1...255))
            case "vip":
                let text = try reader.value(for: keyword)
                guard let address = VirtualAddress(text) else {
                    throw VRRPCommandError("vip '\(text)' is not ADDRESS/LENGTH (LENGTH 1-32 for IPv4, 1-128 for IPv6)")
                }
                virtualAddresses.append(address)
            case "advert": advertisement = try reader.value(for: keyword)
            case "version":
                let text = try reader.value(for: keyword)
                guard let version = UInt8(text).flatMap(VRRPConfiguration.Version.init(rawValue:)) else {
                    throw VRRPCommandError("version must be 2 or 3, not '\(text)'")
                }
                configuration.version = version
            case "preempt":
                let text = try reader.value(for: keyword)
                guard text == "on" || text == "off" else { throw VRRPCommandError("preempt must be on or off, not '\(text)'") }
                configuration.preempt = text == "on"
            case "preempt_delay": configuration.preemptDelay = UInt16(try reader.number(for: keyword, in: 0...3600))
            case "peer":
                let text = try reader.value(for: keyword)
                guard let peer = IPAddress(text) else { throw VRRPCommandError("peer '\(text)' is not an IP address") }
                configuration.peers.append(peer)
            case "auth": configuration.password = try reader.value(for: keyword)
            case "track_servers":
                let minimum = try reader.number(for: keyword, in: 1...65535)
                var weight = 50
                if reader.peek() == "weight" {
                    _ = reader.next()
                    weight = try reader.number(for: "weight", in: 1...254)
                }
                configuration.serverTracking = ServerTracking(minimum: minimum, weight: weight)
            case "notify": configuration.notify = try reader.value(for: keyword)
            case "second_chance": configuration.secondChance = try SecondChance.parse(try reader.value(for: keyword))
            default:
                throw VRRPCommandError("unknown vrrp keyword '\(keyword)'")
            }
        }
        guard let interface else { throw VRRPCommandError("vrrp needs 'interface IF'") }
        guard let vrid else { throw VRRPCommandError("vrrp needs 'vrid N' (1-255)") }
        guard let priority else { throw VRRPCommandError("vrrp needs 'priority P' (1-255)") }
        guard !virtualAddresses.isEmpty else { throw VRRPCommandError("vrrp needs at least one 'vip ADDRESS/LENGTH'") }
        configuration.interface = interface
        configuration.vrid = vrid
        configuration.priority = priority
        configuration.virtualAddresses = virtualAddresses
        try configuration.validate(advertisement: advertisement)
        return configuration
    }

    private mutating func validate(advertisement: String?) throws {
        let family = virtualAddresses[0].address.family
        guard virtualAddresses.allSatisfy({ $0.address.family == family }) else {
            throw VRRPCommandError("the vips of one vrrp instance must be all IPv4 or all IPv6")
        }
        guard peers.allSatisfy({ $0.family == family }) else {
            throw VRRPCommandError("peers must be of the vips' address family")
        }
        if version == .v2 {
            guard family == .v4 else { throw VRRPCommandError("VRRP version 2 is IPv4 only") }
            if let password, password.utf8.count > 8 { throw VRRPCommandError("auth is at most 8 bytes") }
        } else if password != nil {
            throw VRRPCommandError("auth exists only in VRRP version 2 (RFC 5798 removed it)")
        }
        if secondChance != nil, family != .v4 {
            throw VRRPCommandError("second_chance works with IPv4 vips only, for now")
        }
        if let advertisement { advertisementInterval = try Self.interval(advertisement, version: version) }
    }

    /// `1s`, `100ms`, or a plain number of seconds: multiples of 10 ms up to 40.95 s in
    /// version 3 (RFC 5798 section 5.2.7: 12 bits of centiseconds), whole seconds up to 255 in
    /// version 2 (RFC 3768 section 5.3.7). The number is bounded before it is scaled, so no
    /// input can overflow.
    static func interval(_ text: String, version: VRRPConfiguration.Version) throws -> UInt16 {
        let inMilliseconds = text.hasSuffix("ms")
        let digits = inMilliseconds ? text.dropLast(2) : text.hasSuffix("s") ? text.dropLast() : Substring(text)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw VRRPCommandError("advert '\(text)' is not like 1s or 100ms")
        }
        let unit = inMilliseconds ? 1 : 1000
        let (maximum, step, bound) = version == .v3
            ? (40950, 10, "version 3 takes multiples of 10ms from 10ms up to 40950ms (40.95s)")
            : (255_000, 1000, "version 2 takes whole seconds from 1s up to 255s")
        guard let count = Int(digits), (1...maximum / unit).contains(count), count * unit % step == 0 else {
            throw VRRPCommandError("advert '\(text)': \(bound)")
        }
        return UInt16(count * unit / 10)
    }

    /// The words of the command that recreates this instance (for `write`).
    public var words: [String] {
        var words = ["interface", interface, "vrid", "\(vrid)", "priority", "\(priority)"]
        for address in virtualAddresses { words += ["vip", "\(address)"] }
        words += ["advert", advertisementInterval % 100 == 0 ? "\(advertisementInterval / 100)s" : "\(Int(advertisementInterval) * 10)ms"]
        words += ["version", "\(version.rawValue)", "preempt", preempt ? "on" : "off"]
        if let preemptDelay { words += ["preempt_delay", "\(preemptDelay)"] }
        for peer in peers { words += ["peer", "\(peer)"] }
        if let password { words += ["auth", password] }
        if let serverTracking { words += ["track_servers", "\(serverTracking.minimum)", "weight", "\(serverTracking.weight)"] }
        if let notify { words += ["notify", notify] }
        if let secondChance { words += ["second_chance", "\(secondChance)"] }
        return words
    }

    /// Whether a running instance can take `other` without starting again: the same router
    /// (interface, VRID), speaking the same version for the same addresses, with the same
    /// second chance (whose programs and addresses are the instance's while it runs).
    public func changesInPlace(to other: VRRPInstanceConfiguration) -> Bool {
        isSameRouter(as: other) && version == other.version && virtualAddresses == other.virtualAddresses
            && secondChance == other.secondChance
    }

    /// One virtual router per VRID on an interface (RFC 5798 section 1): the key of an instance.
    public func isSameRouter(as other: VRRPInstanceConfiguration) -> Bool {
        interface == other.interface && vrid == other.vrid
    }

    /// The advertised priority for a number of available servers.
    public func effectivePriority(availableServers: Int) -> UInt8 {
        guard let serverTracking, availableServers < serverTracking.minimum else { return priority }
        return UInt8(max(1, Int(priority) - serverTracking.weight))
    }
}

/// A malformed `vrrp` command, in words for the operator.
public struct VRRPCommandError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

private struct WordReader {
    let words: [String]
    var position = 0

    mutating func next() -> String? {
        guard position < words.count else { return nil }
        defer { position += 1 }
        return words[position]
    }

    func peek() -> String? { position < words.count ? words[position] : nil }

    mutating func value(for keyword: String) throws -> String {
        guard let value = next() else { throw VRRPCommandError("'\(keyword)' needs a value") }
        return value
    }

    mutating func number(for keyword: String, in range: ClosedRange<Int>) throws -> Int {
        let text = try value(for: keyword)
        guard let number = Int(text), range.contains(number) else {
            throw VRRPCommandError("'\(keyword)' must be a number in \(range.lowerBound)-\(range.upperBound), not '\(text)'")
        }
        return number
    }
}
