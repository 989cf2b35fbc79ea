// ForwardedForRewriter is fed reads of any size: the output must not depend on where the
// input was split, and every input byte must be in it, in order.
import BalancerCore
import NIOCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzForwardedFor(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = Array(UnsafeBufferPointer(start: data, count: size))[...]
    // Byte 0: the client address's family, and a head limit small enough to be reached.
    // Bytes 1...N (N from byte 0): the lengths of the reads, repeated over the stream.
    guard let control = input.popFirst() else { return 0 }
    let address = control & 0x80 == 0 ? "192.0.2.7" : "2001:db8::7"
    let maxHeadLength = control & 0x40 == 0 ? ForwardedForRewriter.defaultMaxHeadLength : 64 + Int(control & 0x0F) * 16
    let readLengths = input.prefix(Int(control >> 4 & 0x3) + 1).map { max(1, Int($0)) }
    input = input.dropFirst(readLengths.count)
    let stream = Array(input)

    var whole = ForwardedForRewriter(clientAddress: address, maxHeadLength: maxHeadLength)
    var expected = whole.process(ByteBuffer(bytes: stream))
    expected.writeImmutableBuffer(whole.finish())

    var split = ForwardedForRewriter(clientAddress: address, maxHeadLength: maxHeadLength)
    var output = ByteBuffer()
    var offset = 0
    var reads = 0
    while offset < stream.count {
        let end = min(stream.count, offset + readLengths[reads % readLengths.count])
        output.writeImmutableBuffer(split.process(ByteBuffer(bytes: stream[offset..<end])))
        offset = end
        reads += 1
    }
    output.writeImmutableBuffer(split.finish())

    let rewritten = Array(expected.readableBytesView)
    precondition(Array(output.readableBytesView) == rewritten, "the output depends on how \(stream) was split by \(readLengths)")
    // Addresses are only ever added: the input is a subsequence of the output.
    var next = rewritten.startIndex
    for byte in stream {
        guard let found = rewritten[next...].firstIndex(of: byte) else {
            preconditionFailure("\(stream) lost bytes: \(rewritten)")
        }
        next = found + 1
    }
    return 0
}
