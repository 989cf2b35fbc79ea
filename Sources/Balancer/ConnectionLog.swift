#if canImport(Glibc)
import Glibc
#endif

/// `-l FILE`, `log FILE`: one line per finished connection, appended:
/// `UNIXTIME CLIENT SERVER SENT RECEIVED` (bytes to the server and from it). Lines are
/// short and go to the page cache, so they are written on the event loop, as pen does.
final class ConnectionLog {
    private var file: UnsafeMutablePointer<FILE>?

    /// Closes the current file and opens `path` for appending; nil turns the log off.
    /// SIGHUP calls it with the same path so that a rotated log is reopened.
    func open(_ path: String?) throws {
        if let file { fclose(file) }
        file = nil
        guard let path else { return }
        guard let opened = fopen(path, "a") else {
            throw ConfigurationError("cannot open log \(path): \(String(cString: strerror(errno)))")
        }
        file = opened
    }

    func record(client: String, server: String, sent: UInt64, received: UInt64) {
        guard let file else { return }
        fputs("\(time(nil)) \(client) \(server) \(sent) \(received)\n", file)
        fflush(file)
    }

    deinit {
        if let file { fclose(file) }
    }
}
