import VRRPCore

/// HAProxy's PROXY protocol (doc/proxy-protocol.txt, versions 1 and 2): a header before the
/// stream that tells a server the client's address, which pen cannot pass on. penha sends it
/// to servers that ask for it (`server N proxy_protocol v1|v2`), and with `accept_proxy`
/// reads it from an upstream balancer, taking the client's address from it.
public enum ProxyProtocol: String, CaseIterable, Equatable, Sendable {
    case off, v1, v2
}

/// One end of a proxied connection as the header carries it.
public struct ProxyEndpoint: Equatable, Sendable {
    public let address: IPAddress
    public let port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }
}

public enum ProxyHeader {
    /// Version 2's signature (section 2.2).
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// Version 1's longest line, CRLF included (section 2.1).
    static let longestV1 = 107
    /// Version 2's addresses and TLVs: more than any real sender's TLVs take (HAProxy sends a
    /// few dozen bytes of them); a longer header is refused, not read without bound.
    public static let longestV2Payload = 1024
    /// The most a reader needs to look at before it knows.
    public static let longest = 16 + longestV2Payload

    /// The header for a connection from `source` to `destination`. Both known and of one
    /// family: TCP4 or TCP6; otherwise version 1's UNKNOWN, or version 2's PROXY command with
    /// no address (section 2.2: the receiver then uses the connection's own).
    public static func encode(_ version: ProxyProtocol, source: ProxyEndpoint?, destination: ProxyEndpoint?) -> [UInt8] {
        let pair = source.flatMap { source in
            destination.flatMap { source.address.family == $0.address.family ? (source, $0) : nil }
        }
        switch version {
        case .off:
            return []
        case .v1:
            guard let (source, destination) = pair else { return Array("PROXY UNKNOWN\r\n".utf8) }
            let family = source.address.family == .v4 ? "TCP4" : "TCP6"
            return Array("PROXY \(family) \(source.address) \(destination.address) \(source.port) \(destination.port)\r\n".utf8)
        case .v2:
            var header = signature + [0x21]  // version 2, PROXY
            guard let (source, destination) = pair else { return header + [0x00, 0x00, 0x00] }
            let addresses: [UInt8] = source.address.family == .v4
                ? [0x11] + [0x00, 12] + v4Bytes(source.address) + v4Bytes(destination.address)
                : [0x21] + [0x00, 36] + source.address.bytes + destination.address.bytes
            header += addresses
            header += [UInt8(source.port >> 8), UInt8(source.port & 0xFF), UInt8(destination.port >> 8), UInt8(destination.port & 0xFF)]
            return header
        }
    }

    private static func v4Bytes(_ address: IPAddress) -> [UInt8] {
        let value = address.ipv4 ?? 0
        return [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    public enum Parsed: Equatable, Sendable {
        /// A header may still follow: read more.
        case incomplete
        case invalid(String)
        /// `length` bytes make the header; `source` and `destination` are nil when it names
        /// none (UNKNOWN, LOCAL, or a family other than TCP over IPv4 or IPv6).
        case header(length: Int, source: ProxyEndpoint?, destination: ProxyEndpoint?)
    }

    /// What the first bytes of a connection hold. Never reads past `longest`.
    public static func parse(_ bytes: some Collection<UInt8>) -> Parsed {
        let bytes = Array(bytes.prefix(longest))
        let v1 = Array("PROXY ".utf8)
        if bytes.starts(with: v1) { return parseV1(bytes) }
        if bytes.starts(with: signature) { return parseV2(bytes) }
        if v1.starts(with: bytes) || signature.starts(with: bytes) { return .incomplete }
        return .invalid("no PROXY protocol header")
    }

    /// Section 2.1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`.
    private static func parseV1(_ bytes: [UInt8]) -> Parsed {
        let window = bytes.prefix(longestV1)
        guard let cr = window.firstIndex(where: { $0 == 0x0D || $0 == 0x0A }) else {
            return bytes.count >= longestV1 ? .invalid("a version 1 header longer than 107 bytes") : .incomplete
        }
        guard bytes[cr] == 0x0D, cr + 1 >= bytes.count || bytes[cr + 1] == 0x0A else {
            return .invalid("a version 1 header not ended by CRLF")
        }
        guard cr + 1 < bytes.count else { return .incomplete }
        let length = cr + 2
        let words = bytes[6..<cr].split(separator: 0x20, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if words.first == "UNKNOWN" { return .header(length: length, source: nil, destination: nil) }
        guard words.count == 5, words[0] == "TCP4" || words[0] == "TCP6" else {
            return .invalid("a version 1 header that is neither TCP4, TCP6 nor UNKNOWN with four fields")
        }
        let family: IPAddress.Family = words[0] == "TCP4" ? .v4 : .v6
        guard let source = IPAddress(words[1]), let destination = IPAddress(words[2]),
              source.family == family, destination.family == family,
              let sourcePort = port(words[3]), let destinationPort = port(words[4]) else {
            return .invalid("a version 1 header with a bad address or port")
        }
        return .header(length: length, source: ProxyEndpoint(address: source, port: sourcePort),
                       destination: ProxyEndpoint(address: destination, port: destinationPort))
    }

    /// A port as version 1 writes it: decimal, 0-65535, no leading zero.
    private static func port(_ text: String) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ ("0"..."9").contains($0) }), text == "0" || !text.hasPrefix("0") else { return nil }
        return UInt16(text)
    }

    /// Section 2.2: signature, version and command, family, length, addresses, TLVs.
    private static func parseV2(_ bytes: [UInt8]) -> Parsed {
        guard bytes.count >= 16 else { return .incomplete }
        let versionCommand = bytes[12], family = bytes[13]
        let payload = Int(bytes[14]) << 8 | Int(bytes[15])
        guard versionCommand >> 4 == 2 else { return .invalid("a version 2 header of another version") }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .invalid("a version 2 header with an unknown command") }
        guard payload <= longestV2Payload else {
            return .invalid("a version 2 header longer than \(16 + longestV2Payload) bytes")
        }
        guard bytes.count >= 16 + payload else { return .incomplete }
        let length = 16 + payload
        // LOCAL: the upstream's own connection (a health check): its addresses are not a client's.
        guard command == 1 else { return .header(length: length, source: nil, destination: nil) }
        let body = bytes[16..<length]
        switch family {
        case 0x11:
            guard payload >= 12 else { return .invalid("a version 2 TCP4 header too short for its addresses") }
            let at = body.startIndex
            let source = IPAddress(ipv4: body[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) })
            let destination = IPAddress(ipv4: body[at + 4..<at + 8].reduce(0) { $0 << 8 | UInt32($1) })
            return .header(length: length, source: ProxyEndpoint(address: source, port: port(body, at + 8)),
                           destination: ProxyEndpoint(address: destination, port: port(body, at + 10)))
        case 0x21:
            guard payload >= 36 else { return .invalid("a version 2 TCP6 header too short for its addresses") }
            let at = body.startIndex
            guard let source = IPAddress(bytes: Array(body[at..<at + 16])),
                  let destination = IPAddress(bytes: Array(body[at + 16..<at + 32])) else {
                return .invalid("a version 2 TCP6 header with bad addresses")
            }
            return .header(length: length, source: ProxyEndpoint(address: source, port: port(body, at + 32)),
                           destination: ProxyEndpoint(address: destination, port: port(body, at + 34)))
        default:
            // UNSPEC, UDP or Unix addresses: the receiver keeps the connection's own (section 2.2).
            return .header(length: length, source: nil, destination: nil)
        }
    }

    private static func port(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt16 {
        UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1])
    }
}
