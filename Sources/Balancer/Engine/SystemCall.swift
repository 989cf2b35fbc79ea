#if canImport(Glibc)
import Glibc
#endif

/// One non-blocking system call's outcome, errno read once: what the engine's calls return
/// instead of -1 and a switch over errno at each (NIO's `System.swift` does the same).
enum SystemCallResult: Equatable {
    /// The call's non-negative result: bytes moved (0: the peer's FIN, for a read), a descriptor.
    case done(Int)
    /// EAGAIN / EWOULDBLOCK: nothing now; edge-triggered epoll reports the next readiness.
    case wouldBlock
    case failed(Int32)

    /// A signal arriving during a non-blocking call is rare; more than this many in a row is
    /// taken as a failure rather than retried without end.
    static let interruptRetries = 8

    /// Runs `call` (a wrapper returning -1 and setting errno on failure), again after EINTR.
    @inline(__always)
    init(_ call: () -> Int) {
        for _ in 0..<Self.interruptRetries {
            let result = call()
            if result >= 0 {
                self = .done(result)
                return
            }
            let code = errno
            switch code {
            case EAGAIN, EWOULDBLOCK:
                self = .wouldBlock
                return
            case EINTR:
                continue
            default:
                self = .failed(code)
                return
            }
        }
        self = .failed(EINTR)
    }
}
