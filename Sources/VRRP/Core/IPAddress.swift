/// An IPv4 or IPv6 address: penha's one address value, for VRRP's wire and tie-breaks, the
/// client table and the access lists alike. 128 bits in two words, no heap: IPv4 is kept in
/// its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so that a client reaching a dual-stack
/// listener as ::ffff:a.b.c.d is the same client as a.b.c.d, and an IPv4-mapped address
/// given as IPv6 is the IPv4 address.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case v4, v6 }

    /// The first and last 64 bits in network order.
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// `address` in host order (0x7F000001 for 127.0.0.1).
    public init(ipv4 address: UInt32) {
        self.init(high: 0, low: Self.mappedPrefix | UInt64(address))
    }

    private static let mappedPrefix: UInt64 = 0xFFFF_0000_0000

    public var family: Family { high == 0 && low >> 32 == 0xFFFF ? .v4 : .v6 }

    /// The IPv4 address in host order; nil for IPv6.
    public var ipv4: UInt32? { family == .v4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// 4 bytes for IPv4, 16 for IPv6, network byte order: the form on VRRP's wire.
    public var bytes: [UInt8] {
        let all = (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - $0 * 8)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - $0 * 8)) }
        return family == .v4 ? Array(all.suffix(4)) : all
    }

    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4:
            self.init(ipv4: bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            self.init(high: bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) },
                      low: bytes.suffix(8).reduce(0) { $0 << 8 | UInt64($1) })
        default:
            return nil
        }
    }

    /// Parses dotted-quad IPv4 or textual IPv6 (no brackets, no zone), exactly as glibc's
    /// inet_pton does (RFC 4291 section 2.2), in Swift: the core reaches no C library.
    public init?(_ text: String) {
        guard let bytes = text.contains(":") ? Self.parseV6(Array(text.utf8)[...]) : Self.parseV4(Array(text.utf8)[...]) else {
            return nil
        }
        self.init(bytes: bytes)
    }

    /// Four decimal parts of 0-255, no leading zero, nothing else.
    private static func parseV4(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var parts: [UInt8] = []
        for part in text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ (0x30...0x39).contains($0) }),
                  part.count == 1 || part.first != UInt8(ascii: "0") else { return nil }
            let value = part.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard value <= 255 else { return nil }
            parts.append(UInt8(value))
        }
        return parts.count == 4 ? parts : nil
    }

    /// Groups of 1-4 hex digits, at most one `::` standing for one or more zero groups, and
    /// an IPv4 address in place of the last two groups.
    private static func parseV6(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        guard let gap = text.indices.first(where: { text[$0] == 0x3A && $0 + 1 < text.endIndex && text[$0 + 1] == 0x3A }) else {
            guard let all = groups(text, allowsV4: true), all.count == 16 else { return nil }
            return all
        }
        guard let head = groups(text[..<gap], allowsV4: false), let tail = groups(text[(gap + 2)...], allowsV4: true),
              head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    /// `a:b:c` (empty: none) as bytes; the last group may be an IPv4 address when allowed.
    private static func groups(_ text: ArraySlice<UInt8>, allowsV4: Bool) -> [UInt8]? {
        guard !text.isEmpty else { return [] }
        let fields = text.split(separator: 0x3A, omittingEmptySubsequences: false)
        var bytes: [UInt8] = []
        for (index, field) in fields.enumerated() {
            if index == fields.count - 1, allowsV4, field.contains(UInt8(ascii: ".")) {
                guard let v4 = parseV4(field) else { return nil }
                bytes += v4
                continue
            }
            guard (1...4).contains(field.count) else { return nil }
            var value = 0
            for character in field {
                guard let digit = hexDigit(character) else { return nil }
                value = value << 4 | digit
            }
            bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
        }
        return bytes.count <= 16 ? bytes : nil
    }

    private static func hexDigit(_ character: UInt8) -> Int? {
        switch character {
        case 0x30...0x39: return Int(character - 0x30)
        case 0x61...0x66: return Int(character - 0x61 + 10)
        case 0x41...0x46: return Int(character - 0x41 + 10)
        default: return nil
        }
    }

    /// As glibc's inet_ntop writes it: dotted quad for IPv4; for IPv6 lowercase hex groups,
    /// the longest run of two or more zero groups (the first of equals) as `::`, and an
    /// address whose first 96 bits are zero but for its last two groups (`::a.b.c.d`) with
    /// those as an IPv4 address (RFC 5952 section 4).
    public var description: String {
        let bytes = self.bytes
        guard bytes.count == 16 else { return bytes.map { "\($0)" }.joined(separator: ".") }
        let words = (0..<8).map { Int(bytes[$0 * 2]) << 8 | Int(bytes[$0 * 2 + 1]) }
        var best: (base: Int, length: Int)?
        var run: (base: Int, length: Int)?
        for (index, word) in words.enumerated() {
            if word == 0 {
                run = (run?.base ?? index, (run?.length ?? 0) + 1)
                if let current = run, current.length > best?.length ?? 0 { best = current }
            } else {
                run = nil
            }
        }
        if let found = best, found.length < 2 { best = nil }
        var text = ""
        var index = 0
        while index < 8 {
            if let best, index >= best.base && index < best.base + best.length {
                if index == best.base { text += ":" }
                index += 1
                continue
            }
            if index != 0 { text += ":" }
            if index == 6, let best, best.base == 0, best.length == 6 || (best.length == 5 && words[5] == 0xFFFF) {
                text += bytes[12...].map { "\($0)" }.joined(separator: ".")
                return text
            }
            text += String(words[index], radix: 16)
            index += 1
        }
        if let best, best.base + best.length == 8 { text += ":" }
        return text
    }

    /// Unsigned comparison in network byte order; IPv4 sorts before IPv6.
    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.family != rhs.family { return lhs.family == .v4 }
        return (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}
