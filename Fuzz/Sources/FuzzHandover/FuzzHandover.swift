// The handover's frames (HandoverMessage) on any bytes, read as the new process reads them:
// a header, its body, the descriptors the header announced (or one fewer, when the input's
// first byte is odd: SCM_RIGHTS cut short). No input crashes or hangs it, nothing is read
// past a header's announced body, what is accepted encodes back to the same frame (but a
// reason that was not UTF-8) and reads back as itself, and the reception refuses once it
// has refused.
import BalancerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandover(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = input.first else { return 0 }
    let missingDescriptor = first & 1 == 1
    var rest = input.dropFirst()
    var reception = HandoverReception()
    var failed = false
    // Bounded by the input: each round consumes at least a header.
    while rest.count >= HandoverMessage.headerSize {
        let header: HandoverFrameHeader
        do {
            header = try HandoverFrameHeader(rest.prefix(HandoverMessage.headerSize))
        } catch {
            return 0
        }
        rest = rest.dropFirst(HandoverMessage.headerSize)
        let body = rest.prefix(header.bodyLength)
        rest = rest.dropFirst(body.count)
        let descriptors = max(0, header.descriptorCount - (missingDescriptor ? 1 : 0))
        let message: HandoverMessage
        do {
            message = try HandoverMessage.decode(header, body: body, descriptors: descriptors)
        } catch {
            return 0
        }
        precondition(body.count == header.bodyLength && descriptors == header.descriptorCount, "accepted a frame cut short")
        let encoded = message.encoded()
        if case .refused = message {} else {
            precondition(Array(encoded.dropFirst(HandoverMessage.headerSize)) == Array(body), "\(message.name) encodes differently")
        }
        do {
            let again = try HandoverMessage.decode(try HandoverFrameHeader(encoded.prefix(HandoverMessage.headerSize)),
                                                   body: encoded.dropFirst(HandoverMessage.headerSize), descriptors: message.descriptorCount)
            precondition(again == message, "\(message.name) does not read back as itself")
        } catch {
            preconditionFailure("its own encoding refused: \(error)")
        }
        do {
            _ = try reception.receive(message)
            precondition(!failed, "the reception accepted a message after refusing one")
        } catch {
            failed = true
        }
    }
    return 0
}
