import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Signals reach penha through the main thread's sigwait, never through asynchronous
/// handlers: they are blocked first thing in main, so every thread started later (NIO's
/// included) inherits the mask and the kernel cannot deliver them anywhere else. No
/// libdispatch worker may run: those set their own masks and would take the signal.
enum Signals {
    /// SIGHUP: reload; SIGUSR1: statistics; SIGUSR2: upgrade; SIGTERM and SIGINT: stop.
    static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]

    private static var handledSet: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in handled { sigaddset(&set, number) }
        return set
    }

    /// A handled signal's name, for log lines.
    static func name(_ number: Int32) -> String {
        switch number {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        default: return "signal \(number)"
        }
    }

    /// Call first thing in main, before any thread exists.
    static func block() {
        var set = handledSet
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// The next handled signal if one comes within `milliseconds`, else nil.
    static func next(within milliseconds: Int) -> Int32? {
        var set = handledSet
        var timeout = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        let number = sigtimedwait(&set, nil, &timeout)
        return number > 0 ? number : nil
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

/// Work a signal asks for (a reload, the statistics), started without waiting on the main
/// thread, which must stay free to take SIGTERM whatever the work is stuck on. A signal
/// that arrives while the work runs makes it run once more after; no more than that waits.
/// Its state is touched only on `eventLoop` (the box checks that), so it needs no lock.
final class CoalescedWork: Sendable {
    private struct State {
        var running = false
        var again = false
    }

    private let eventLoop: EventLoop
    private let work: @Sendable () -> EventLoopFuture<Void>
    private let state: NIOLoopBoundBox<State>

    init(on eventLoop: EventLoop, _ work: @escaping @Sendable () -> EventLoopFuture<Void>) {
        self.eventLoop = eventLoop
        self.work = work
        state = .makeBoxSendingValue(State(), eventLoop: eventLoop)
    }

    /// Returns at once; the work starts on the event loop.
    func request() {
        eventLoop.execute { self.start() }
    }

    private func start() {
        guard !state.value.running else {
            state.value.again = true
            return
        }
        state.value.running = true
        work().whenComplete { _ in
            self.state.value.running = false
            if self.state.value.again {
                self.state.value.again = false
                self.start()
            }
        }
    }
}

/// SIGTERM ends penha within `seconds` whatever is stuck (a thread blocked on a file, an
/// event loop that does not answer): armed when the orderly shutdown starts, it logs one
/// line and leaves with `_exit` if that shutdown has not exited by then. The drain moves the
/// end to its own bound plus the same margin (`allow`). The end is a time on the monotonic
/// clock, not a count of sleeps, so a long drain is not cut short by the sleeps' drift. NIO's
/// thread pool, not libdispatch, so the signal mask stays as `Signals.block` set it.
final class ShutdownDeadline: Sendable {
    static let seconds = 5
    /// When the shutdown must be over, in nanoseconds of the monotonic clock.
    private let end: Atomic<UInt64>

    init(logger: Logger, beforeExit: @escaping @Sendable () -> Void) {
        let started = NIODeadline.now().uptimeNanoseconds
        end = Atomic(started + UInt64(Self.seconds) * 1_000_000_000)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        pool.submit { [self] state in
            guard state == .active else { return }
            while case let now = NIODeadline.now().uptimeNanoseconds, now < end.load(ordering: .relaxed) {
                // At most a second, so that an end moved earlier is seen within one.
                usleep(UInt32(min(end.load(ordering: .relaxed) - now, 1_000_000_000) / 1000))
            }
            let waited = (NIODeadline.now().uptimeNanoseconds - started) / 1_000_000_000
            logger.error("orderly shutdown not done after \(waited) s; exiting now")
            beforeExit()
            _exit(1)
        }
    }

    /// The shutdown may go on for `seconds` from now: the drain's time left plus the margin.
    func allow(_ seconds: Int) {
        end.store(NIODeadline.now().uptimeNanoseconds + UInt64(max(0, seconds)) * 1_000_000_000, ordering: .relaxed)
    }
}
