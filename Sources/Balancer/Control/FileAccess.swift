import BalancerCore
#if canImport(Glibc)
import Glibc
#endif

extension PenhaError {
    /// A file operation that failed, said as an operator reads it:
    /// `cannot open log /var/log/p.log: permission denied`. An I/O failure, not a mistake in
    /// the configuration.
    static func file(_ action: String, _ path: String, _ problem: String) -> PenhaError {
        PenhaError("cannot \(action) \(path): \(problem)", kind: .io)
    }

    /// The failure of the system call just made, by its errno.
    static func file(_ action: String, _ path: String, errno number: Int32 = errno) -> PenhaError {
        file(action, path, SystemErrorText.describe(errno: number))
    }
}

/// Every file penha reads or writes by name goes through here, so that none of them can
/// block a thread or be turned against penha: files are opened non-blocking (a FIFO without
/// a writer or reader answers at once instead of hanging), anything that is not a regular
/// file is refused, and a file is replaced only through a fresh temporary file beside it.
public enum FileAccess {
    /// The contents of a regular file of at most `maxBytes`.
    public static func read(_ path: String, maxBytes: Int, action: String = "read") throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw PenhaError.file(action, path) }
        defer { close(descriptor) }
        try requireRegular(descriptor, path, action)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= maxBytes {
            let count = Glibc.read(descriptor, &chunk, chunk.count)
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw PenhaError.file(action, path) }
            if count == 0 { break }
            bytes += chunk.prefix(count)
        }
        guard bytes.count <= maxBytes else { throw PenhaError.file(action, path, "larger than \(maxBytes) bytes") }
        return bytes
    }

    /// A regular file opened for appending, created 0644 if missing; the caller owns the descriptor.
    public static func openForAppending(_ path: String, action: String) throws -> Int32 {
        try requireRegularIfPresent(path, action)
        return try openRegular(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, action)
    }

    /// Whether `openForAppending` would succeed now, creating nothing (for `penha check`): a
    /// file that is there is opened for appending and closed, for a missing one its directory
    /// must be writable.
    public static func checkAppendable(_ path: String, action: String) throws {
        guard try requireRegularIfPresent(path, action) else { return try checkWritableDirectory(of: path, action) }
        close(try openRegular(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC, action))
    }

    /// Refuses a path that names something other than a regular file, before a library
    /// (OpenSSL) opens it by name with a blocking open.
    public static func requireRegularFile(_ path: String, action: String = "read") throws {
        var status = stat()
        guard stat(path, &status) == 0 else { throw PenhaError.file(action, path) }
        guard isRegular(status) else { throw PenhaError.file(action, path, "not a regular file") }
    }

    /// Whether `replace` could write `path` now: its directory exists and is writable, and
    /// the path is absent or a regular file. Lets a command be refused when it is given,
    /// not when its first report is due.
    public static func checkReplaceable(_ path: String, action: String = "write") throws {
        try requireRegularIfPresent(path, action)
        try checkWritableDirectory(of: path, action)
    }

    private static func checkWritableDirectory(of path: String, _ action: String) throws {
        let directory = directoryName(of: path)
        var status = stat()
        guard stat(directory, &status) == 0 else { throw PenhaError.file(action, path, errno: errno) }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw PenhaError.file(action, path, "\(directory) is not a directory") }
        guard access(directory, W_OK) == 0 else { throw PenhaError.file(action, path) }
    }

    /// Replaces `path` with `contents` so that a reader sees the old file or the whole new
    /// one: written to a new temporary file in the same directory (created exclusively and
    /// never through a symlink, so nobody can plant one there), synced, then renamed over
    /// `path`. A path that exists and is not a regular file (a device, a FIFO) is refused.
    public static func replace(_ path: String, with contents: String, action: String = "write") throws {
        try requireRegularIfPresent(path, action)
        var existing = stat()
        let mode = stat(path, &existing) == 0 ? existing.st_mode & 0o7777 : 0o644
        let (descriptor, temporary) = try createTemporary(besides: path, action: action)
        var failure: PenhaError?
        if fchmod(descriptor, mode) != 0 || !writeAll(Array(contents.utf8), to: descriptor) || fsync(descriptor) != 0 {
            failure = PenhaError.file(action, path)
        }
        if close(descriptor) != 0, failure == nil { failure = PenhaError.file(action, path) }
        if failure == nil, rename(temporary, path) != 0 { failure = PenhaError.file(action, path) }
        if let failure {
            unlink(temporary)
            throw failure
        }
    }

    /// Writes every byte, retrying short writes; false on an error (errno tells which).
    public static func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return false }
            offset += count
        }
        return true
    }

    /// Attempts at a fresh temporary name before giving up (each collision is another file
    /// that appeared with a random name: not something that goes on by chance).
    static let temporaryAttempts = 16

    private static func createTemporary(besides path: String, action: String) throws -> (Int32, String) {
        let directory = directoryName(of: path)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        for _ in 0..<temporaryAttempts {
            let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
            let temporary = "\(directory)/.\(name).\(suffix).tmp"
            let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if descriptor >= 0 { return (descriptor, temporary) }
            guard errno == EEXIST else { throw PenhaError.file(action, path) }
        }
        throw PenhaError.file(action, path, "no unused temporary name in \(directory)")
    }

    private static func directoryName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Whether `path` is there (a regular file); throws if it is something else.
    @discardableResult
    private static func requireRegularIfPresent(_ path: String, _ action: String) throws -> Bool {
        var status = stat()
        if stat(path, &status) != 0 {
            guard errno == ENOENT else { throw PenhaError.file(action, path) }
            return false
        }
        guard isRegular(status) else { throw PenhaError.file(action, path, "not a regular file") }
        return true
    }

    /// `open` without blocking, of a regular file only; the caller owns the descriptor.
    private static func openRegular(_ path: String, _ flags: Int32, _ action: String) throws -> Int32 {
        let descriptor = open(path, flags, 0o644)
        guard descriptor >= 0 else { throw PenhaError.file(action, path) }
        do {
            try requireRegular(descriptor, path, action)
        } catch {
            close(descriptor)
            throw error
        }
        return descriptor
    }

    private static func requireRegular(_ descriptor: Int32, _ path: String, _ action: String) throws {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw PenhaError.file(action, path) }
        guard isRegular(status) else { throw PenhaError.file(action, path, "not a regular file") }
    }

    private static func isRegular(_ status: stat) -> Bool { status.st_mode & S_IFMT == S_IFREG }
}
