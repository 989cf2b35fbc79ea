import VRRPCore
import CVRRPSockets

#if canImport(Glibc)
import Glibc
#endif

/// Gratuitous ARP for an IPv4 virtual address (RFC 5798 section 6.4.2 "broadcast a
/// gratuitous ARP request"): an ARP request from the new master for its own address, so
/// hosts and switches on the link move the address to our hardware address at once.
public enum GratuitousARP {
    static let broadcast: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    static let etherTypeARP: UInt16 = 0x0806

    /// The whole Ethernet frame: header, then the 28-byte ARP request.
    public static func frame(for address: IPAddress, from hardwareAddress: [UInt8]) -> [UInt8] {
        precondition(address.family == .v4 && hardwareAddress.count == 6)
        var frame = broadcast + hardwareAddress + bigEndian(etherTypeARP)
        frame += bigEndian(1)                   // hardware type: Ethernet
        frame += bigEndian(0x0800)              // protocol type: IPv4
        frame += [6, 4]                         // address lengths
        frame += bigEndian(1)                   // operation: request
        frame += hardwareAddress + address.bytes  // sender: us, with the virtual address
        frame += [0, 0, 0, 0, 0, 0] + address.bytes  // target: the same address, no hardware address
        return frame
    }

    /// Sends one gratuitous ARP out of `interface`.
    public static func send(for address: IPAddress, on interface: NetworkInterface) throws {
        let frame = frame(for: address, from: try interface.hardwareAddress())
        let fd = cvrrp_open_arp_socket()
        guard fd >= 0 else { throw VRRPSystemError("packet socket for gratuitous ARP (needs CAP_NET_RAW)", errno: errno) }
        defer { close(fd) }
        let sent = frame.withUnsafeBytes { bytes in
            cvrrp_send_frame(fd, interface.index, bytes.baseAddress, bytes.count, broadcast, etherTypeARP)
        }
        guard sent == frame.count else { throw VRRPSystemError("gratuitous ARP for \(address)", errno: errno) }
    }
}

func bigEndian(_ value: UInt16) -> [UInt8] {
    [UInt8(value >> 8), UInt8(value & 0xFF)]
}
