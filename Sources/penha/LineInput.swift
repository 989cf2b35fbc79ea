import Balancer
import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

/// Lines from a file descriptor (a log file, stdin), each at most `PenLogLine.maxLineBytes`
/// (`BoundedLines`): what the log tools read, with memory bounded whatever they are fed.
final class LineInput {
    private let descriptor: Int32
    private let ownsDescriptor: Bool
    private var splitter = BoundedLines()
    private var ready: [BoundedLines.Line] = []
    private var next = 0
    private var ended = false
    private var chunk = [UInt8](repeating: 0, count: 65536)

    /// stdin, or another descriptor the caller keeps.
    init(descriptor: Int32) {
        self.descriptor = descriptor
        ownsDescriptor = false
    }

    /// A regular file, opened for reading (a FIFO or a device is refused, as everywhere in penha).
    init(path: String) throws {
        try FileAccess.requireRegularFile(path, action: "read log")
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw RuntimeFailure(description: "cannot read log \(path): \(SystemErrorText.describe(errno: errno))")
        }
        self.descriptor = descriptor
        ownsDescriptor = true
    }

    deinit {
        if ownsDescriptor { close(descriptor) }
    }

    /// The next line; nil at the end (a read error ends the input too, like the end of file).
    func read() -> BoundedLines.Line? {
        while next == ready.count {
            if ended { return nil }
            ready = []
            next = 0
            let count = Glibc.read(descriptor, &chunk, chunk.count)
            if count < 0, errno == EINTR { continue }
            if count <= 0 {
                ended = true
                if let last = splitter.finish() { ready = [last] }
            } else {
                ready = splitter.feed(chunk.prefix(count))
            }
        }
        defer { next += 1 }
        return ready[next]
    }
}

/// Output gathered into 64 KiB writes: a log tool writes many short lines.
struct BufferedOutput {
    let descriptor: Int32
    private var buffer: [UInt8] = []

    init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    mutating func write(_ line: [UInt8]) {
        buffer += line
        if buffer.count >= 65536 { flush() }
    }

    mutating func flush() {
        _ = FileAccess.writeAll(buffer, to: descriptor)
        buffer = []
    }
}
