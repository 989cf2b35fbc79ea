import BalancerCore
import CEngine
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Why a handover could not go on: said in the log of both processes and in the answer.
public struct HandoverFailure: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The Unix stream socket between two penha processes in a handover: frames
/// (`HandoverMessage`) with their descriptors over SCM_RIGHTS, blocking, every wait bounded:
/// a frame must come whole within `timeout`, so a stuck peer ends the handover instead of
/// holding the process that waits.
public final class HandoverSocket {
    public static let timeout = Duration.seconds(5)
    public let descriptor: Int32

    init(descriptor: Int32) {
        self.descriptor = descriptor
        var time = timeval(tv_sec: 0, tv_usec: 200_000)
        // Each call waits at most 200 ms, so the frame's deadline is checked that often.
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(descriptor)
    }

    /// Connects to the socket a taking process listens on.
    public static func connect(to path: String) throws -> HandoverSocket {
        let address = try SocketAddress(unixDomainSocketPath: path)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw HandoverFailure("socket: \(SystemErrorText.describe(errno: errno))") }
        let handover = HandoverSocket(descriptor: descriptor)
        guard address.withSockAddr({ Glibc.connect(descriptor, $0, socklen_t($1)) }) == 0 else {
            throw HandoverFailure("cannot connect to \(path): \(SystemErrorText.describe(errno: errno))")
        }
        return handover
    }

    /// A listening socket at `path`, mode 0600, that `user` may connect to (its owner: root
    /// taking over from a penha that runs as another user); the caller removes the path.
    public static func listen(at path: String, connectableBy user: uid_t) throws -> Int32 {
        let address = try SocketAddress(unixDomainSocketPath: path)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw HandoverFailure("socket: \(SystemErrorText.describe(errno: errno))") }
        // fchmod before bind: the socket file is made with the mode of the socket, so no other
        // user can connect at any time. The owner is set by path, never through a symlink: the
        // directory may be `user`'s, who could swap the bound socket for a link to any file
        // between the bind and the chown (root giving that file away).
        _ = fchmod(descriptor, 0o600)
        guard address.withSockAddr({ bind(descriptor, $0, socklen_t($1)) }) == 0,
              user == geteuid() || fchownat(AT_FDCWD, path, user, gid_t.max, AT_SYMLINK_NOFOLLOW) == 0,
              Glibc.listen(descriptor, 1) == 0 else {
            let failure = HandoverFailure("cannot listen on \(path): \(SystemErrorText.describe(errno: errno))")
            close(descriptor)
            throw failure
        }
        return descriptor
    }

    /// The first connection to `listener` within `timeout`.
    public static func accept(_ listener: Int32, timeout: Duration = timeout) throws -> HandoverSocket {
        var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&ready, 1, milliseconds) == 1 else { throw HandoverFailure("the old process did not connect within \(timeout)") }
        let descriptor = penha_accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        guard descriptor >= 0 else { throw HandoverFailure("accept: \(SystemErrorText.describe(errno: errno))") }
        return HandoverSocket(descriptor: descriptor)
    }

    /// The peer's process and user, as the kernel saw them when it connected or listened.
    public var peer: (pid: Int32, uid: UInt32) {
        get throws { try Self.peer(of: descriptor) }
    }

    /// The peer of any connected Unix socket (the control connection's, say).
    public static func peer(of descriptor: Int32) throws -> (pid: Int32, uid: UInt32) {
        var pid: Int32 = 0, uid: UInt32 = 0
        guard penha_peer_credentials(descriptor, &pid, &uid) == 0 else {
            throw HandoverFailure("SO_PEERCRED: \(SystemErrorText.describe(errno: errno))")
        }
        return (pid, uid)
    }

    /// Sends one frame, its descriptors with its first bytes.
    public func send(_ message: HandoverMessage, descriptors: [Int32] = []) throws {
        precondition(descriptors.count == message.descriptorCount, "a frame goes with the descriptors it announces")
        let frame = message.encoded()
        let deadline = ContinuousClock.now + Self.timeout
        var offset = 0
        while offset < frame.count {
            let carried = offset == 0 ? descriptors : []
            let sent = frame[offset...].withUnsafeBytes { bytes in
                carried.withUnsafeBufferPointer {
                    penha_send_descriptors(descriptor, bytes.baseAddress, bytes.count, $0.baseAddress, Int32(carried.count))
                }
            }
            if sent > 0 {
                offset += sent
            } else if sent < 0 && (errno == EAGAIN || errno == EINTR) && ContinuousClock.now < deadline {
                continue
            } else {
                throw HandoverFailure("sending \(message.name): \(sent < 0 ? SystemErrorText.describe(errno: errno) : "the peer is gone")")
            }
        }
    }

    /// The next frame and the descriptors that came with it (the caller owns them); a frame
    /// that is malformed, too large, cut short or not whole within `timeout` is refused, and
    /// any descriptors that came with it are closed.
    public func receive() throws -> (message: HandoverMessage, descriptors: [Int32]) {
        let deadline = ContinuousClock.now + Self.timeout
        var descriptors: [Int32] = []
        do {
            let headerBytes = try read(HandoverMessage.headerSize, collecting: &descriptors, until: deadline)
            let header = try HandoverFrameHeader(headerBytes)
            let body = try read(header.bodyLength, collecting: &descriptors, until: deadline)
            return (try HandoverMessage.decode(header, body: body[...], descriptors: descriptors.count), descriptors)
        } catch {
            for descriptor in descriptors { close(descriptor) }
            throw error
        }
    }

    /// Exactly `count` bytes (bounded by the frame's header), with any descriptors that came.
    private func read(_ count: Int, collecting descriptors: inout [Int32], until deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        var given = [Int32](repeating: -1, count: Int(penha_max_descriptors))
        while offset < count {
            var received: Int32 = 0, truncated: Int32 = 0
            let room = Int32(penha_max_descriptors) - Int32(descriptors.count)
            let result = bytes[offset...].withUnsafeMutableBytes { buffer in
                given.withUnsafeMutableBufferPointer {
                    penha_receive_descriptors(descriptor, buffer.baseAddress, buffer.count, $0.baseAddress, max(0, room), &received, &truncated)
                }
            }
            descriptors += given.prefix(Int(received))
            if truncated != 0 { throw HandoverError.tooLarge("more than \(HandoverMessage.maxDescriptors) descriptors with a frame") }
            if result > 0 {
                offset += result
            } else if result < 0 && (errno == EAGAIN || errno == EINTR) && ContinuousClock.now < deadline {
                continue
            } else if result < 0 && errno == EAGAIN {
                throw HandoverFailure("no whole frame within \(Self.timeout)")
            } else {
                throw HandoverFailure(result == 0 ? "the other process closed the handover" : "receiving: \(SystemErrorText.describe(errno: errno))")
            }
        }
        return bytes
    }
}
