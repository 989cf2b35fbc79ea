import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One thread's I/O buffers: taken when a connection has bytes in flight, given back when
/// they are written, so an idle connection holds none. Grows to the most ever in flight at
/// once and keeps them: no allocation per connection in the steady state.
///
/// 64 KiB: bulk transfers ran at 0.83× pen's rate with 16 KiB and 1.07× with 64 KiB, one
/// thread each, in the same run (bench/RESULTS.md); idle connections are not affected.
struct BufferPool {
    static let size = 64 * 1024
    private var free: [UnsafeMutableRawPointer] = []

    mutating func take() -> UnsafeMutableRawPointer {
        free.popLast() ?? UnsafeMutableRawPointer.allocate(byteCount: Self.size, alignment: 64)
    }

    mutating func give(_ buffer: UnsafeMutableRawPointer) {
        free.append(buffer)
    }
}

/// One direction of a relay: bytes read from one side, waiting to be written to the other.
/// At most `BufferPool.size` wait (plus what a rewriter or TLS adds in `spill`): reading
/// stops while it is full, which is the backpressure.
struct RelayBuffer {
    private(set) var buffer: UnsafeMutableRawPointer?
    private var start = 0
    private var end = 0
    /// Bytes a transformation (X-Forwarded-For, TLS) made beyond what fit, written after the buffer's.
    /// Made only when needed: an empty ByteBuffer is an allocation, twice per connection.
    private var spill: ByteBuffer?
    /// The source sent its FIN (or close_notify): nothing more comes.
    var sourceEnded = false
    /// The FIN was passed on (shutdown(SHUT_WR)) after the last byte.
    var shutDown = false

    private var spilled: Int { spill?.readableBytes ?? 0 }
    var pending: Int { end - start + spilled }
    var isFull: Bool { pending >= BufferPool.size }
    /// Whether everything the source sent is written and the end passed on.
    var isDone: Bool { shutDown }
    /// The source has ended but its end is not passed on yet.
    var isEndPending: Bool { sourceEnded && !shutDown }

    /// Room for a direct read into the buffer; the buffer is taken from the pool when needed.
    mutating func readableSpace(_ pool: inout BufferPool) -> UnsafeMutableRawBufferPointer? {
        guard spilled == 0 else { return nil }
        if buffer == nil { buffer = pool.take() }
        if end == BufferPool.size, start > 0 {
            memmove(buffer!, buffer! + start, end - start)
            end -= start
            start = 0
        }
        guard end < BufferPool.size else { return nil }
        return UnsafeMutableRawBufferPointer(start: buffer! + end, count: BufferPool.size - end)
    }

    mutating func didRead(_ count: Int) {
        end += count
    }

    /// Bytes made by a transformation: into the buffer while they fit and nothing is spilled, else after it.
    mutating func append(_ bytes: UnsafeRawBufferPointer, _ pool: inout BufferPool) {
        var bytes = bytes
        if spilled == 0, let space = readableSpace(&pool) {
            let count = min(space.count, bytes.count)
            space.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: count)
            end += count
            bytes = UnsafeRawBufferPointer(rebasing: bytes[count...])
        }
        if !bytes.isEmpty {
            if spill == nil { spill = ByteBuffer() }
            spill!.writeBytes(bytes)
        }
    }

    /// The next bytes to write, and how many were written to be told with `didWrite`.
    func withPending<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        if end > start, let buffer {
            return body(UnsafeRawBufferPointer(start: buffer + start, count: end - start))
        }
        guard let spill else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return spill.withUnsafeReadableBytes(body)
    }

    mutating func didWrite(_ count: Int, _ pool: inout BufferPool) {
        if end > start {
            start += count
            if start == end { release(&pool) }
        } else {
            spill!.moveReaderIndex(forwardBy: count)
            if spill!.readableBytes == 0 { spill = nil }
        }
    }

    /// Gives the buffer back once empty (an idle connection holds none).
    mutating func release(_ pool: inout BufferPool) {
        guard let buffer, start == end else { return }
        pool.give(buffer)
        self.buffer = nil
        start = 0
        end = 0
    }

    /// The connection ended: whatever is queued is dropped.
    mutating func reset(_ pool: inout BufferPool) {
        start = end
        release(&pool)
        spill = nil
        sourceEnded = false
        shutDown = false
    }
}
