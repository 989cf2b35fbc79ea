import BalancerCore
#if canImport(Glibc)
import Glibc
#endif

/// `-l FILE`, `log FILE`: one line per finished connection, appended:
/// `UNIXTIME CLIENT SERVER SENT RECEIVED` (bytes to the server and from it). Lines are
/// short and go to the page cache, so they are written on the event loop, as pen does;
/// opening the file is not (`LogFile`).
final class ConnectionLog {
    /// nil: the log is off.
    var file: LogFile?

    func record(client: String, server: String, sent: UInt64, received: UInt64) {
        guard let file else { return }
        _ = FileAccess.writeAll(Array("\(time(nil)) \(client) \(server) \(sent) \(received)\n".utf8), to: file.descriptor)
    }
}

/// An open connection log, closed when the last reference goes. Opened on the thread pool
/// (or at start) and handed to the event loop, so that a slow or odd path never stalls it;
/// only a regular file is taken (`log /dev/full` or a FIFO is refused when it is given).
final class LogFile: Sendable {
    let descriptor: Int32

    init(path: String) throws {
        descriptor = try FileAccess.openForAppending(path, action: "open log")
    }

    /// The file for `path`; nil for none.
    static func open(_ path: String?) throws -> LogFile? {
        try path.map { try LogFile(path: $0) }
    }

    deinit {
        close(descriptor)
    }
}
