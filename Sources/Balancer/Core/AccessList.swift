import NIOCore
import VRRPCore

/// One entry of a pen access list: `acl N permit|deny ADDR [MASK]` (IPv4, dotted mask) or
/// `acl N permit|deny ADDR6[/LEN]` (IPv6, prefix length).
public struct AccessRule: Equatable, Sendable {
    public enum Action: String, Sendable {
        case permit, deny
    }

    public enum Source: Equatable, Sendable {
        /// Any mask, contiguous or not: pen accepts every mask and compares bit by bit.
        case ipv4(address: UInt32, mask: UInt32)
        case ipv6(address: ClientKey, prefixLength: Int)
    }

    public let action: Action
    public let source: Source
    // The source as a 128-bit address and mask in ClientKey's layout (IPv4 mapped), so that
    // matching a client is a family check, two ANDs and two compares.
    private let isIPv4: Bool
    private let high: UInt64
    private let low: UInt64
    private let maskHigh: UInt64
    private let maskLow: UInt64

    /// Refuses sources that could never match: pen compares the client's masked address
    /// with the entry's address as given, so an address with bits outside its mask matches
    /// nothing; an IPv4-mapped IPv6 address never arrives (clients in that form count as IPv4).
    public init(_ action: Action, _ source: Source) throws {
        self.action = action
        self.source = source
        switch source {
        case .ipv4(let address, let mask):
            let key = ClientKey(ipv4: address)
            (isIPv4, high, low) = (true, key.high, key.low)
            (maskHigh, maskLow) = (.max, 0xFFFF_FFFF_0000_0000 | UInt64(mask))
            guard address & ~mask == 0 else {
                throw ConfigurationError("acl address \(Self.dotted(address)) has bits outside its mask "
                    + "\(Self.dotted(mask)) and would match nothing: use \(Self.dotted(address & mask))")
            }
        case .ipv6(let address, let prefixLength):
            guard (0...128).contains(prefixLength) else {
                throw ConfigurationError("acl prefix length must be 0-128, not \(prefixLength)")
            }
            guard !address.isIPv4 else {
                throw ConfigurationError("acl address ::ffff:\(address) is IPv4-mapped: write it as an IPv4 entry, "
                    + "\(address) with a dotted mask")
            }
            (isIPv4, high, low) = (false, address.high, address.low)
            // Smart shifts: shifting by 64 or more gives 0, which covers /0, /64 and /128.
            (maskHigh, maskLow) = (.max << (64 - min(prefixLength, 64)), .max << (128 - max(prefixLength, 64)))
            guard high & ~maskHigh == 0, low & ~maskLow == 0 else {
                let network = ClientKey(high: high & maskHigh, low: low & maskLow)
                throw ConfigurationError("acl address \(address)/\(prefixLength) has bits outside its "
                    + "prefix and would match nothing: use \(network)/\(prefixLength)")
            }
        }
    }

    /// Parses the words after `acl`: `N permit|deny ADDR [MASK]` or `N permit|deny ADDR6[/LEN]`.
    /// As in pen, an address containing ':' is IPv6.
    public static func parse(words: [String]) throws -> (list: Int, rule: AccessRule) {
        guard words.count >= 3 else {
            throw ConfigurationError("acl needs: N permit|deny ADDRESS [MASK], or N permit|deny ADDRESS6[/LENGTH]")
        }
        let list = try AccessLists.listNumber(words[0])
        guard let action = Action(rawValue: words[1]) else {
            throw ConfigurationError("acl action must be permit or deny, not '\(words[1])'")
        }
        let address = words[2]
        if address == "country" {
            throw ConfigurationError("acl country entries need GeoIP, which penha does not have")
        }
        if address.contains(":") {
            guard words.count == 3 else {
                throw ConfigurationError("unexpected '\(words[3])' after the IPv6 acl address: "
                    + "IPv6 entries take ADDRESS/LENGTH, not a mask")
            }
            let parts = address.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            // A zone (fe80::1%eth0) would parse but could not be kept: clients are matched by address alone.
            guard !parts[0].contains("%"), let parsed = try? SocketAddress(ipAddress: String(parts[0]), port: 0),
                  case .v6 = parsed else {
                let hint = parts[0].contains("%") ? ": zones (%IF) are not supported" : ""
                throw ConfigurationError("bad IPv6 address '\(parts[0])' in acl\(hint)")
            }
            var prefixLength = 128
            if parts.count == 2 {
                guard let number = decimal(parts[1]), number <= 128 else {
                    throw ConfigurationError("acl prefix length must be 0-128, not '\(parts[1])'")
                }
                prefixLength = number
            }
            return (list, try AccessRule(action, .ipv6(address: ClientKey(parsed), prefixLength: prefixLength)))
        }
        guard words.count <= 4 else {
            throw ConfigurationError("unexpected '\(words[4])' after the acl mask")
        }
        guard let parsed = ipv4(address) else {
            let hint = address.contains("/") ? ": IPv4 entries take a dotted mask, as in 192.0.2.0 255.255.255.0" : ""
            throw ConfigurationError("bad IPv4 address '\(address)' in acl\(hint)")
        }
        var mask = UInt32.max
        if words.count == 4 {
            guard let value = ipv4(words[3]) else {
                throw ConfigurationError("bad acl mask '\(words[3])': expected a dotted mask such as 255.255.255.0")
            }
            mask = value
        }
        return (list, try AccessRule(action, .ipv4(address: parsed, mask: mask)))
    }

    /// The words after `acl N` that parse back to this rule. Masks and lengths are always
    /// written out, as pen's `write` does.
    public var words: [String] {
        switch source {
        case .ipv4(let address, let mask): return [action.rawValue, Self.dotted(address), Self.dotted(mask)]
        case .ipv6(let address, let prefixLength): return [action.rawValue, "\(address)/\(prefixLength)"]
        }
    }

    /// IPv4 entries match IPv4 clients, IPv6 entries the others, as in pen (acl.c skips
    /// entries of the other family); `clientIsIPv4` is worked out once per client.
    func matches(_ client: ClientKey, clientIsIPv4: Bool) -> Bool {
        isIPv4 == clientIsIPv4 && client.high & maskHigh == high && client.low & maskLow == low
    }

    private static func ipv4(_ text: String) -> UInt32? {
        guard case .v4(let address)? = try? SocketAddress(ipAddress: text, port: 0) else {
            return nil
        }
        return UInt32(bigEndian: address.address.sin_addr.s_addr)
    }

    private static func dotted(_ address: UInt32) -> String {
        ClientKey(ipv4: address).description
    }
}

/// pen's ten access lists. A list is checked entry by entry and the first entry matching the
/// client decides; `client_acl`, `control_acl` and `server N acl` name the list to check.
public struct AccessLists: Equatable, Sendable {
    public static let count = 10
    public private(set) var lists: [[AccessRule]] = Array(repeating: [], count: AccessLists.count)

    public init() {}

    /// A list number as commands give it: one digit, 0-9 (pen's atoi would take "x" as 0).
    public static func listNumber(_ text: String) throws -> Int {
        guard text.count == 1, let number = decimal(text) else {
            throw ConfigurationError("access list number must be 0-9, not '\(text)'")
        }
        return number
    }

    /// Adds the rule at the end of the list: rules added earlier take precedence.
    public mutating func append(_ rule: AccessRule, to list: Int) {
        lists[list].append(rule)
    }

    /// `no acl N`: an emptied list permits everyone.
    public mutating func clear(_ list: Int) {
        lists[list].removeAll()
    }

    /// Whether `list` lets the client in. Runs for every connection: a loop of integer compares.
    public func permits(_ client: ClientKey, list: Int) -> Bool {
        // pen does not check Unix-socket clients (acl.c, match_acl_unix returns 1).
        if client == .local { return true }
        let rules = lists[list]
        let isIPv4 = client.isIPv4
        if let rule = rules.first(where: { $0.matches(client, clientIsIPv4: isIPv4) }) {
            return rule.action == .permit
        }
        // As pen's match_acl_ipv4/_ipv6 (`return !permit`): no match gets the opposite of the
        // last entry's action, so a list ending in deny lets the rest in; an empty list permits.
        return rules.last?.action != .permit
    }

    /// The lists as command lines for `write`, in list order. Each non-empty list starts with
    /// `no acl N` (pen writes one for all ten lists), so that reading the file into a running
    /// penha (SIGHUP) replaces the list instead of appending to it.
    public var commands: [Command] {
        lists.enumerated().filter { !$0.element.isEmpty }.flatMap { list, rules in
            [.clearAccessList(list)] + rules.map { .accessRule(list: list, $0) }
        }
    }
}

/// Only ASCII digits: Int() alone would also take "+5" and "-0".
private func decimal(_ text: some StringProtocol) -> Int? {
    guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
        return nil
    }
    return Int(text)
}
