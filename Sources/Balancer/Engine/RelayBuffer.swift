import CEngine
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One thread's I/O buffers: taken when a connection has bytes in flight, given back when
/// they are written, so an idle connection holds none. No allocation per connection in the
/// steady state: spares are kept, but those no connection took for a whole sweep interval
/// go back to the system beyond `spareBuffers`, so a burst's memory is returned once it has
/// passed.
///
/// 64 KiB: bulk transfers ran at 0.83× pen's rate with 16 KiB and 1.07× with 64 KiB, one
/// thread each, in the same run (bench/RESULTS.md); idle connections are not affected.
// A class owning its stack's memory (freed in deinit): a struct with it could be copied and
// free it twice.
final class BufferPool {
    static let size = 64 * 1024
    /// Idle spares a thread with connections keeps (512 KiB); a thread without any keeps none,
    /// so RSS after a burst comes back to within about a MiB of where it started.
    static let spareBuffers = 8
    /// The spare buffers, a stack in memory of its own: an array's popLast and append check
    /// its uniqueness, 70 instructions of a keep-alive request's (bench/RESULTS.md).
    private var free: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private var freeCapacity = 64
    private var freeCount = 0
    /// The fewest spares since the last `trim`: that many were idle the whole interval.
    private var fewestSpare = 0
    /// Empty kernel pipes for splice, kept for the next bulk transfer (two descriptors each, so
    /// at most `sparePipes`).
    private var pipes: [KernelPipe] = []
    static let sparePipes = 64

    init() {
        free = .allocate(capacity: freeCapacity)
    }

    deinit {
        releaseAll()
        free.deallocate()
    }

    func take() -> UnsafeMutableRawPointer {
        guard freeCount > 0 else { return UnsafeMutableRawPointer.allocate(byteCount: Self.size, alignment: 64) }
        freeCount -= 1
        fewestSpare = min(fewestSpare, freeCount)
        return free[freeCount]
    }

    /// Each sweep: the spares idle since the last one, beyond `spareBuffers` (none when the
    /// thread has no connection left), are freed, and malloc hands their pages back to the
    /// kernel (64 KiB blocks freed amid a heap would otherwise stay resident). Spares in use
    /// meanwhile are kept, so a steady load never frees and allocates them again.
    func trim(hasConnections: Bool) {
        let idle = min(fewestSpare, freeCount - (hasConnections ? Self.spareBuffers : 0))
        if idle > 0 {
            for _ in 0..<idle {
                freeCount -= 1
                free[freeCount].deallocate()
            }
            malloc_trim(0)
        }
        fewestSpare = freeCount
    }

    /// The thread stops: every spare buffer and pipe goes back to the system.
    func releaseAll() {
        for index in 0..<freeCount { free[index].deallocate() }
        freeCount = 0
        fewestSpare = 0
        for pipe in pipes {
            close(pipe.read)
            close(pipe.write)
        }
        pipes.removeAll()
        malloc_trim(0)
    }

    func give(_ buffer: UnsafeMutableRawPointer) {
        if freeCount == freeCapacity {
            // Bounded by the buffers this thread has: each is taken before it is given back.
            let larger = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: freeCapacity * 2)
            larger.moveInitialize(from: free, count: freeCount)
            free.deallocate()
            free = larger
            freeCapacity *= 2
        }
        (free + freeCount).initialize(to: buffer)
        freeCount += 1
    }

    /// nil when no pipe can be made (no descriptor left): the transfer goes on through buffers.
    func takePipe() -> KernelPipe? {
        if let pipe = pipes.popLast() { return pipe }
        var descriptors: [Int32] = [-1, -1]
        guard penha_pipe(&descriptors) == 0 else { return nil }
        return KernelPipe(read: descriptors[0], write: descriptors[1])
    }

    /// An empty pipe is kept for reuse; one still holding bytes (its connection ended) is closed.
    func give(_ pipe: KernelPipe, empty: Bool) {
        if empty && pipes.count < Self.sparePipes {
            pipes.append(pipe)
        } else {
            close(pipe.read)
            close(pipe.write)
        }
    }
}

struct KernelPipe {
    let read: Int32
    let write: Int32
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
    /// Bulk: the last read filled the buffer, so the next ones splice(2) through `kernelPipe`
    /// (socket to pipe to socket, no copy through user space) once the buffer is empty.
    var isBulk = false
    private(set) var kernelPipe: KernelPipe?
    /// Bytes spliced into the kernel pipe and not yet out of it.
    private(set) var inKernelPipe = 0
    /// The kernel pipe took no more (its slots are pages, not bytes): reading waits for a write.
    private var kernelPipeFull = false

    private var spilled: Int { spill?.readableBytes ?? 0 }
    private var buffered: Int { end - start + spilled }
    var pending: Int { buffered + inKernelPipe }
    var isFull: Bool { pending >= BufferPool.size || kernelPipeFull }
    /// Whether the next read splices: bulk and nothing buffered, or the pipe already in use.
    var splices: Bool { inKernelPipe > 0 || (isBulk && buffered == 0) }

    /// The kernel pipe to splice into, taken from the pool when needed; nil when none can be had.
    mutating func pipeForSplice(_ pool: inout BufferPool) -> KernelPipe? {
        if kernelPipe == nil { kernelPipe = pool.takePipe() }
        return kernelPipe
    }

    mutating func didSpliceIn(_ count: Int) {
        inKernelPipe += count
    }

    /// The pipe would take no more for now (EAGAIN with bytes in it).
    mutating func kernelPipeIsFull() {
        kernelPipeFull = true
    }

    /// Bytes spliced out of the pipe; an empty pipe goes back to the pool (an idle connection holds none).
    mutating func didSpliceOut(_ count: Int, _ pool: inout BufferPool) {
        inKernelPipe -= count
        kernelPipeFull = false
        if inKernelPipe == 0, let kernelPipe {
            pool.give(kernelPipe, empty: true)
            self.kernelPipe = nil
        }
    }

    /// Room for a direct read into the buffer; the buffer is taken from the pool when needed.
    mutating func readableSpace(_ pool: inout BufferPool) -> UnsafeMutableRawBufferPointer? {
        guard spilled == 0 else { return nil }
        let buffer = self.buffer ?? pool.take()
        self.buffer = buffer
        if end == BufferPool.size, start > 0 {
            memmove(buffer, buffer + start, end - start)
            end -= start
            start = 0
        }
        guard end < BufferPool.size else { return nil }
        return UnsafeMutableRawBufferPointer(start: buffer + end, count: BufferPool.size - end)
    }

    mutating func didRead(_ count: Int) {
        end += count
    }

    /// Bytes made by a transformation: into the buffer while they fit and nothing is spilled, else after it.
    mutating func append(_ bytes: UnsafeRawBufferPointer, _ pool: inout BufferPool) {
        var bytes = bytes
        if spilled == 0, let space = readableSpace(&pool) {
            let count = min(space.count, bytes.count)
            space.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[..<count]))
            end += count
            bytes = UnsafeRawBufferPointer(rebasing: bytes[count...])
        }
        if !bytes.isEmpty {
            // Taken out while written, so that the buffer is not shared and copied.
            var more = spill.take() ?? ByteBuffer()
            more.writeBytes(bytes)
            spill = more
        }
    }

    /// Bytes that go before everything queued (what a server's socket did not take of a PROXY
    /// protocol header): rare and small, so what is queued is copied behind them. Nothing is
    /// spliced before a server is connected, so nothing is in the kernel pipe.
    mutating func prepend(_ bytes: ArraySlice<UInt8>, _ pool: inout BufferPool) {
        assert(inKernelPipe == 0, "bytes in the kernel pipe would go before the prepended ones")
        var queued = ByteBuffer(bytes: bytes)
        if end > start, let buffer { queued.writeBytes(UnsafeRawBufferPointer(start: buffer + start, count: end - start)) }
        if var spilled = spill { queued.writeBuffer(&spilled) }
        start = end
        spill = nil
        release(&pool)
        queued.withUnsafeReadableBytes { append($0, &pool) }
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
        } else if var rest = spill.take() {
            rest.moveReaderIndex(forwardBy: count)
            spill = rest.readableBytes == 0 ? nil : rest
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

    /// Everything queued, in the order it would have been written (the kernel pipe's bytes
    /// first, as `send` takes them first), taken out: the connection moves to another
    /// process (`penha upgrade`). nil when the kernel pipe cannot be read.
    mutating func takeAll(_ pool: inout BufferPool) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(pending)
        if inKernelPipe > 0, let kernelPipe {
            var chunk = [UInt8](repeating: 0, count: inKernelPipe)
            // Bounded: each read takes bytes out of the pipe, which holds `inKernelPipe`.
            while bytes.count < inKernelPipe {
                let count = chunk.withUnsafeMutableBytes { read(kernelPipe.read, $0.baseAddress, inKernelPipe - bytes.count) }
                guard count > 0 else { return nil }
                bytes += chunk.prefix(count)
            }
        }
        if end > start, let buffer { bytes += UnsafeRawBufferPointer(start: buffer + start, count: end - start) }
        if let spill { bytes += spill.readableBytesView }
        inKernelPipe = 0
        reset(&pool)
        return bytes
    }

    /// The connection ended: whatever is queued is dropped.
    mutating func reset(_ pool: inout BufferPool) {
        start = end
        release(&pool)
        if let kernelPipe { pool.give(kernelPipe, empty: inKernelPipe == 0) }
        kernelPipe = nil
        inKernelPipe = 0
        kernelPipeFull = false
        isBulk = false
        spill = nil
    }
}
