#if canImport(Glibc)
import Glibc
#endif

/// Signals reach penha through the main thread's sigwait, never through asynchronous
/// handlers: they are blocked first thing in main, so every thread started later (NIO's
/// included) inherits the mask and the kernel cannot deliver them anywhere else. No
/// libdispatch worker may run: those set their own masks and would take the signal.
enum Signals {
    /// SIGHUP: reload; SIGUSR1: statistics; SIGTERM and SIGINT: stop.
    static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1]

    private static var handledSet: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in handled { sigaddset(&set, number) }
        return set
    }

    /// Call first thing in main, before any thread exists.
    static func block() {
        var set = handledSet
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits on the calling thread for the next handled signal.
    static func next() -> Int32 {
        var set = handledSet
        var number: Int32 = 0
        // sigwait fails only for an invalid set; EINTR does not apply to it.
        while sigwait(&set, &number) != 0 {}
        return number
    }
}
