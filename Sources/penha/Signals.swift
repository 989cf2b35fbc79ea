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
/// line and leaves with `_exit` if that shutdown has not exited by then. The drain, whose
/// own bound the main thread keeps, adds its time (`extend`). NIO's thread pool, not
/// libdispatch, so the signal mask stays as `Signals.block` set it.
final class ShutdownDeadline: Sendable {
    static let seconds = 5
    /// Seconds of the shutdown still allowed, counted down by the watching thread.
    private let left = Atomic<Int>(ShutdownDeadline.seconds)

    init(logger: Logger, beforeExit: @escaping @Sendable () -> Void) {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        pool.submit { [self] state in
            guard state == .active else { return }
            var waited = 0
            while left.wrappingSubtract(1, ordering: .relaxed).newValue >= 0 {
                sleep(1)
                waited += 1
            }
            logger.error("orderly shutdown not done after \(waited) s; exiting now")
            beforeExit()
            _exit(1)
        }
    }

    /// Allows `seconds` more: the drain, while its loop runs, so that the steps around it keep their own 5.
    func extend(by seconds: Int) {
        left.wrappingAdd(seconds, ordering: .relaxed)
    }
}
