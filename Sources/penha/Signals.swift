import Dispatch

#if canImport(Glibc)
import Glibc
#endif

enum Signals {
    /// Runs `handler` once on SIGTERM or SIGINT. Keep the returned sources alive.
    static func onTermination(_ handler: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            return source
        }
    }
}
