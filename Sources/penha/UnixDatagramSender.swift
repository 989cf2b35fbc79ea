import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket that sends to one AF_UNIX address: systemd's notify socket, /dev/log.
/// Each send names the address (no connect), so a receiver that restarts is reached again.
final class UnixDatagramSender: Sendable {
    private let fd: Int32
    private let address: sockaddr_un
    /// The address's length: the family and the path's bytes that count.
    private let length: socklen_t

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `path`, or with a leading `@` a name in the abstract namespace (which starts with a zero byte).
    init(path: String) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw Failure(description: "'\(path)' is not a usable socket path")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot make a socket: \(SystemErrorText.describe(errno: errno))") }
        self.fd = fd
        self.address = address
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
    }

    deinit { close(fd) }

    /// Sends `text` as one datagram; false if it did not go (nobody listening, say).
    @discardableResult
    func send(_ text: String) -> Bool {
        var address = self.address
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL), $0, length) }
        }
        return sent == bytes.count
    }
}
