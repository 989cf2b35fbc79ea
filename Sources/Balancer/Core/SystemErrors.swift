import NIOCore

#if canImport(Glibc)
import Glibc
#endif

// The one file of the balancer's core that reaches Glibc, for values only: errno numbers and
// their strerror text. No system call (.ci/check-layers allows Glibc here and nowhere else).

/// Whose fault a failed socket call (accept, socket, bind, connect) is. Only the server's
/// failures blacklist it: when this host ran out of descriptors or memory, every server
/// would fail alike, and blacklisting them all would turn a passing shortage into an outage
/// (issue 16). Pure, over errno, so that any data path can ask it.
public enum FailureCause: Equatable, Sendable {
    /// Out of descriptors, memory or socket buffers: it passes once connections close, so
    /// stop accepting for a moment instead of retrying at once.
    case localResources
    /// This host cannot make the connection it was asked for: no such source address, no
    /// free local port, no such address family here.
    case localAddress
    /// The server refused, reset, was unreachable or did not answer in time.
    case server

    /// How long the listener stops accepting after `localResources`: HAProxy's 100 ms
    /// (`listener_accept`). A shorter pause spins on a listener whose backlog cannot be
    /// accepted; a longer one keeps waiting clients waiting after descriptors are free.
    public static let backOff = TimeAmount.milliseconds(100)

    public init(errno code: CInt) {
        switch code {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM,
             ENOSPC:  // epoll_ctl: fs.epoll.max_user_watches reached
            self = .localResources
        case EADDRNOTAVAIL,  // bind: a source address the host lacks; connect: no ephemeral port left
             EADDRINUSE,  // bind to port 0: the ephemeral ports are used up
             EAFNOSUPPORT:  // socket: no IPv6 (or IPv4) on this host
            self = .localAddress
        default:
            self = .server
        }
    }

    /// An error from NIO: its errno when it carries one; anything else (a connect timeout)
    /// is the server's.
    public init(_ error: Error) {
        if let error = error as? IOError {
            self.init(errno: error.errnoCode)
        } else {
            self = .server
        }
    }

    public var isLocal: Bool { self != .server }
}

/// System errors as people read them, `address already in use`: the lowercased strerror
/// text, without NIO's function names (`bind(descriptor:ptr:bytes:)`) or errno numbers.
/// The one place that renders them; whatever reaches a message goes through here.
public enum SystemErrorText {
    public static func describe(errno code: Int32) -> String {
        String(cString: strerror(code)).lowercased()
    }

    /// NIO's system call failures by their errno, its socket address errors in words; any
    /// other error (penha's own, which already read well) as it describes itself.
    public static func describe(_ error: Error) -> String {
        switch error {
        case let error as IOError: return describe(errno: error.errnoCode)
        case SocketAddressError.unixDomainSocketPathTooLong: return "the path is too long for a Unix socket"
        default: return "\(error)"
        }
    }
}
