// The sync channel's frame decoder and handshake (SyncSession), either end, fed reads of any
// size: no input crashes or hangs it, where the input was split does not change what it
// does, and every message it returns is sealed and read back as itself. The MAC is injected
// as all zeros, so that the fuzzer can make frames that pass it and reach the decoder and
// every state of the handshake.
import BalancerCore

private let zeroMAC: SyncSession.MAC = { _ in [UInt8](repeating: 0, count: SyncMessage.macSize) }

private func hello(_ value: UInt8) -> SyncHello {
    SyncHello(node: [UInt8](repeating: value, count: SyncHello.nodeSize), nonce: [UInt8](repeating: value, count: SyncMessage.nonceSize))
}

/// What a session did with a stream, read by read; a refused stream ends at its error.
private struct Outcome: Equatable {
    var reply: [UInt8] = []
    var provenTimes = 0
    var messages: [SyncMessage] = []
    var error: SyncProtocolError?
    var established = false
}

private func run(_ role: SyncRole, reads: [ArraySlice<UInt8>]) -> Outcome {
    var session = role == .initiator ? SyncSession.initiator(hello(1), mac: zeroMAC).session : SyncSession.responder(hello(1), mac: zeroMAC)
    var outcome = Outcome()
    for read in reads {
        do {
            let output = try session.receive(read)
            outcome.reply += output.reply
            outcome.provenTimes += output.proven ? 1 : 0
            outcome.messages += output.messages
        } catch {
            outcome.error = error
            // A refused session stays refused.
            do {
                _ = try session.receive([UInt8]())
                preconditionFailure("a refused session read on")
            } catch let again {
                precondition(again == error, "refused with \(error), then with \(again)")
            }
            break
        }
    }
    outcome.established = session.isEstablished
    precondition(outcome.provenTimes <= 1, "proven twice")
    precondition(outcome.established == (outcome.provenTimes == 1) || outcome.error != nil, "established without the proof")
    return outcome
}

/// Two ends with the handshake done, to seal a message and read it back.
private func establishedPair() -> (sender: SyncSession, receiver: SyncSession) {
    var (sender, senderHello) = SyncSession.initiator(hello(2), mac: zeroMAC)
    var receiver = SyncSession.responder(hello(3), mac: zeroMAC)
    do {
        let proof = try sender.receive(try receiver.receive(senderHello).reply).reply
        _ = try receiver.receive(proof)
    } catch {
        preconditionFailure("the handshake failed: \(error)")
    }
    return (sender, receiver)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSyncSession(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = Array(UnsafeBufferPointer(start: data, count: size))[...]
    // Byte 0: which end (bit 7) and how many read lengths follow (bits 0-1, plus one).
    // Bytes 1...N: the lengths of the reads, repeated over the stream.
    guard let control = input.popFirst() else { return 0 }
    let role: SyncRole = control & 0x80 == 0 ? .initiator : .responder
    let readLengths = input.prefix(Int(control & 0x03) + 1).map { max(1, Int($0)) }
    input = input.dropFirst(readLengths.count)
    let stream = Array(input)

    var reads: [ArraySlice<UInt8>] = []
    var offset = 0
    while offset < stream.count {
        let end = min(stream.count, offset + readLengths[reads.count % readLengths.count])
        reads.append(stream[offset..<end])
        offset = end
    }
    let whole = run(role, reads: [stream[...]])
    let split = run(role, reads: reads)
    // A refused stream may have given messages from the reads before the one that failed.
    precondition(whole.error == split.error, "refused as \(String(describing: whole.error)) whole, \(String(describing: split.error)) split")
    if whole.error == nil { precondition(whole == split, "the outcome depends on how \(stream) was split by \(readLengths)") }

    var (sender, receiver) = establishedPair()
    for message in split.messages {
        do {
            let readBack = try receiver.receive(sender.seal(message)).messages
            precondition(readBack == [message], "\(message) reads back as \(readBack)")
        } catch {
            preconditionFailure("\(message) sealed does not read back: \(error)")
        }
    }
    return 0
}
