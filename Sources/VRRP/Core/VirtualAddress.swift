/// A virtual address with its prefix length, as `vip ADDR/LEN` configures it.
public struct VirtualAddress: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init(address: IPAddress, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// `ADDR/LEN`; without `/LEN` a host address (/32 or /128).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.family == .v4 ? 32 : 128
        guard let length = parts.count == 2 ? Int(parts[1]) : maximum, (1...maximum).contains(length) else { return nil }
        self.init(address: address, prefixLength: length)
    }

    /// The address alone: /32 or /128.
    static func host(_ address: IPAddress) -> VirtualAddress {
        VirtualAddress(address: address, prefixLength: address.family == .v4 ? 32 : 128)
    }

    public var description: String { "\(address)/\(prefixLength)" }
}
