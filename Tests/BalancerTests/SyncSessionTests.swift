import XCTest
@testable import BalancerCore
import VRRPCore

/// A sync entry for client 203.0.113.CLIENT on [2001:db8::5]:SERVER.
func syncEntry(_ client: UInt8, server: Int = 8080, age: UInt32 = 1500) -> SyncEntry {
    SyncEntry(client: ClientKey(ipv4: 0xCB00_7100 | UInt32(client)),
              server: SyncSettings.Address(ip: IPAddress("2001:db8::5")!, port: server), ageMilliseconds: age)
}

/// The sync channel's handshake and authenticated codec (`SyncSession`): what proves the
/// key, and that reflected, replayed, relayed and misdirected hellos and frames are refused.
final class SyncSessionTests: XCTestCase {
    /// A stand-in MAC: SHA-256 is not needed to test the framing, only a keyed function that
    /// differs per key and covers every byte.
    private func mac(key: UInt8) -> SyncSession.MAC {
        { bytes in
            var state: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(key)
            var out: [UInt8] = []
            for round in 0..<4 {
                for byte in bytes { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
                state ^= UInt64(round)
                out += withUnsafeBytes(of: state.bigEndian, Array.init)
            }
            return out
        }
    }

    private func bytes(_ value: UInt8) -> [UInt8] { [UInt8](repeating: value, count: SyncMessage.nonceSize) }

    /// Node `node`'s hello with nonce `nonce`.
    private func hello(node: UInt8, nonce: UInt8) -> SyncHello { SyncHello(node: bytes(node), nonce: bytes(nonce)) }

    private func initiator(node: UInt8 = 1, nonce: UInt8 = 0xA, key: UInt8 = 1) -> (session: SyncSession, hello: [UInt8]) {
        SyncSession.initiator(hello(node: node, nonce: nonce), mac: mac(key: key))
    }

    private func responder(node: UInt8 = 2, nonce: UInt8 = 0xB, key: UInt8 = 1) -> SyncSession {
        SyncSession.responder(hello(node: node, nonce: nonce), mac: mac(key: key))
    }

    /// The three frames of the handshake, as they went: the initiator's hello, the
    /// responder's, the initiator's proof; and the two established ends.
    private func handshake(initiatorNonce: UInt8 = 0xA, responderNonce: UInt8 = 0xB) throws
        -> (sender: SyncSession, receiver: SyncSession, frames: [[UInt8]]) {
        var (sender, hello) = initiator(nonce: initiatorNonce)
        var receiver = responder(nonce: responderNonce)
        let answer = try receiver.receive(hello)
        let proof = try sender.receive(answer.reply)
        XCTAssertEqual(try receiver.receive(proof.reply), SyncSession.Output(proven: true))
        XCTAssertTrue(sender.isEstablished && receiver.isEstablished)
        return (sender, receiver, [hello, answer.reply, proof.reply])
    }

    private func assertRefused(_ body: @autoclosure () throws -> SyncSession.Output, _ expected: SyncProtocolError,
                               _ message: String = "", line: UInt = #line) {
        XCTAssertThrowsError(try body(), message, line: line) { XCTAssertEqual($0 as? SyncProtocolError, expected, message, line: line) }
    }

    // MARK: the handshake

    func testEachEndProvesTheKeyOverTheOthersNonce() throws {
        var (sender, hello) = initiator()
        var receiver = responder()
        XCTAssertFalse(sender.isEstablished)
        let answer = try receiver.receive(hello)
        XCTAssertFalse(answer.proven, "a hello alone proves nothing: it may be replayed")
        XCTAssertFalse(answer.reply.isEmpty, "the responder speaks once the initiator's hello has come")
        XCTAssertFalse(receiver.isEstablished)
        let proof = try sender.receive(answer.reply)
        XCTAssertTrue(proof.proven, "the responder's hello covers the initiator's nonce")
        XCTAssertTrue(sender.isEstablished)
        XCTAssertEqual(try receiver.receive(proof.reply), SyncSession.Output(proven: true), "the proof covers both nonces")
        XCTAssertTrue(receiver.isEstablished)
    }

    func testMessagesRoundTripSplitAtEveryByte() throws {
        let messages: [SyncMessage] = [
            .fullCopy(first: true, last: false, entries: (0..<3).map { syncEntry($0) }),
            .fullCopy(first: false, last: true, entries: []),
            .updates([syncEntry(9, server: 1, age: .max), SyncEntry(client: IPAddress("2001:db8::77")!, server: syncEntry(1).server, ageMilliseconds: 0)]),
        ]
        var (sender, _, frames) = try handshake()
        let bytes = frames[0] + frames[2] + messages.flatMap { sender.seal($0) }
        for split in 0...bytes.count {
            var receiver = responder()
            let first = try receiver.receive(bytes[..<split])
            let second = try receiver.receive(bytes[split...])
            XCTAssertEqual(first.messages + second.messages, messages, "split at \(split)")
            XCTAssertEqual(first.reply + second.reply, frames[1], "split at \(split)")
            XCTAssertTrue(first.proven != second.proven, "split at \(split)")
        }
    }

    func testAWrongKeyIsRejectedAtTheHelloAndAfterIt() throws {
        var honestResponder = responder()
        assertRefused(try honestResponder.receive(initiator(key: 2).hello), .authenticationFailed)
        // A responder without the key cannot answer an honest hello, even with all it saw.
        var (honestInitiator, hello) = initiator()
        var hostile = responder(key: 2)
        assertRefused(try hostile.receive(hello), .authenticationFailed)
        var forger = responder(key: 2)
        let forged = try forger.receive(initiator(key: 2).hello).reply
        assertRefused(try honestInitiator.receive(forged), .authenticationFailed)
        // Nor can it seal what follows the handshake.
        var (_, receiver, _) = try handshake()
        var (forgingSender, forgingHello) = initiator(key: 2)
        var forgingReceiver = responder(key: 2)
        _ = try forgingSender.receive(try forgingReceiver.receive(forgingHello).reply)
        assertRefused(try receiver.receive(forgingSender.seal(.updates([syncEntry(1)]))), .authenticationFailed)
    }

    func testANodesOwnHelloSentBackIsRejected() throws {
        // The initiator's hello, reflected: it was sealed for the other direction.
        var (sender, hello) = initiator()
        assertRefused(try sender.receive(hello), .authenticationFailed)
        // The responder's hello, reflected: it waits for the proof.
        var receiver = responder()
        let answer = try receiver.receive(initiator(node: 3).hello).reply
        assertRefused(try receiver.receive(answer), .unexpected("a hello where the proof was due"))
        // A hello naming the node itself, sealed with the key: the node's other end, relayed.
        var incoming = responder(node: 1)
        assertRefused(try incoming.receive(initiator(node: 1).hello), .ownHello)
        var outgoing = initiator(node: 1)
        var relayedResponder = responder(node: 1)
        let relayed = try relayedResponder.receive(initiator(node: 3).hello).reply
        assertRefused(try outgoing.session.receive(relayed), .ownHello)
    }

    func testTheNodesOwnFramesRelayedIntoItsIncomingSideAreRejected() throws {
        // Node 1's connection to its peer's address and a connection from there to node 1,
        // joined by a process without the key: node 1 would be talking to itself.
        var (outgoing, hello) = initiator(node: 1, nonce: 0xA)
        var incoming = responder(node: 1, nonce: 0xB)
        assertRefused(try incoming.receive(hello), .ownHello)
        XCTAssertFalse(incoming.isEstablished)
        assertRefused(try incoming.receive([]), .ownHello, "a refused session stays refused")
        XCTAssertFalse(outgoing.isEstablished)
        XCTAssertEqual(try outgoing.receive([]), SyncSession.Output())
    }

    func testAHelloOrProofReplayedFromAnEarlierConnectionIsRejected() throws {
        let (_, _, earlier) = try handshake(initiatorNonce: 0xA, responderNonce: 0xB)
        // The responder's hello answered nonce A: a new initiator's nonce is another.
        var (sender, _) = initiator(nonce: 0xC)
        assertRefused(try sender.receive(earlier[1]), .authenticationFailed)
        XCTAssertFalse(sender.isEstablished)
        // The initiator's hello cannot be told from a new one, but its proof covered the earlier responder's nonce.
        var receiver = responder(nonce: 0xD)
        XCTAssertFalse(try receiver.receive(earlier[0]).proven)
        assertRefused(try receiver.receive(earlier[2]), .authenticationFailed)
        XCTAssertFalse(receiver.isEstablished)
    }

    func testAFrameFromOneDirectionIsRejectedInTheOther() throws {
        var (sender, receiver, _) = try handshake()
        // Each direction is at sequence number 2, so only the direction tells the frames apart.
        let update = SyncMessage.updates([syncEntry(1)])
        let fromReceiver = [receiver.seal(update), receiver.seal(update)]
        let fromSender = sender.seal(update)
        XCTAssertEqual(try sender.receive(fromReceiver[0]).messages, [update])
        assertRefused(try sender.receive(fromSender), .authenticationFailed, "the sender's own frame, sent back")
        assertRefused(try receiver.receive(fromReceiver[1]), .authenticationFailed, "the receiver's own frame, sent back")
    }

    // MARK: frames

    func testEveryFlippedBitIsRejected() throws {
        var (sender, _, frames) = try handshake()
        let frame = sender.seal(.updates([syncEntry(1)]))
        for index in 4..<frame.count {
            var changed = frame
            changed[index] ^= 0x01
            var receiver = responder()
            _ = try receiver.receive(frames[0] + frames[2])
            XCTAssertThrowsError(try receiver.receive(changed), "bit flipped in byte \(index)")
        }
    }

    func testAReplayedOrReorderedMessageIsRejected() throws {
        var (sender, receiver, frames) = try handshake()
        let first = sender.seal(.updates([syncEntry(1)]))
        let second = sender.seal(.updates([syncEntry(2)]))
        XCTAssertEqual(try receiver.receive(first).messages, [.updates([syncEntry(1)])])
        assertRefused(try receiver.receive(first), .badSequence(expected: 3, got: 2))
        var fresh = responder()
        _ = try fresh.receive(frames[0] + frames[2])
        assertRefused(try fresh.receive(second), .badSequence(expected: 2, got: 3))
        // A message recorded on another connection (other nonces) does not verify on this one.
        var (_, other, _) = try handshake(initiatorNonce: 0xA, responderNonce: 0xC)
        assertRefused(try other.receive(first), .authenticationFailed)
    }

    func testBadFramesAreRefusedWithoutBuffering() throws {
        var (sender, receiver, _) = try handshake()
        let huge = UInt32(SyncMessage.maxFrameSize)
        assertRefused(try receiver.receive(withUnsafeBytes(of: huge.bigEndian, Array.init)), .tooLarge(SyncMessage.maxFrameSize + 4))
        var short = responder()
        assertRefused(try short.receive([0, 0, 0, 5, 1, 2, 3, 4, 5]), .malformed("a frame of 9 bytes"))
        var early = responder()
        assertRefused(try early.receive(sender.seal(.updates([]))), .unexpected("a message where a hello was due"))
        var (_, twice, _) = try handshake()
        assertRefused(try twice.receive(initiator().hello), .unexpected("a hello where a message was due"))
    }

    func testAPeerOfAnotherVersionIsToldSo() throws {
        // Version 1's hello: its nonce alone, sealed without a context.
        var version1: [UInt8] = [0, 0, 0, 1 + 8 + 16 + 32, 1] + [UInt8](repeating: 0, count: 8) + bytes(7)
        version1 += mac(key: 1)([UInt8](repeating: 0, count: 32) + version1)
        var receiver = responder()
        assertRefused(try receiver.receive(version1), .version(1))
        var (_, hello) = initiator()
        hello[SyncMessage.headerSize] = 3
        var later = responder()
        assertRefused(try later.receive(hello), .version(3))
        XCTAssertTrue("\(SyncProtocolError.version(3))".contains("upgrade both nodes"))
    }

    func testBodiesThatLieAboutTheirEntriesAreRefused() throws {
        // A correctly sealed frame whose body is malformed: the MAC is right, the decoder still refuses.
        let key = mac(key: 1)
        func sealed(type: UInt8, body: [UInt8]) throws -> [SyncMessage] {
            var (_, receiver, _) = try handshake()
            var frame: [UInt8] = []
            appendBigEndian(UInt32(1 + 8 + body.count + 32), to: &frame)
            frame.append(type)
            appendBigEndian(UInt64(2), to: &frame)
            frame += body
            frame += key(Array("penha sync 2".utf8) + [3] + bytes(0xA) + bytes(0xB) + frame)
            return try receiver.receive(frame).messages
        }
        XCTAssertEqual(try sealed(type: 3, body: [0, 0]), [.updates([])], "the stand-in sealing is right")
        XCTAssertThrowsError(try sealed(type: 3, body: [0, 2] + [UInt8](repeating: 0, count: 38))) { XCTAssertTrue("\($0)".contains("2 entries in 38 bytes")) }
        XCTAssertThrowsError(try sealed(type: 3, body: [0x03, 0xE9])) { XCTAssertTrue("\($0)".contains("1001 entries")) }
        XCTAssertThrowsError(try sealed(type: 2, body: [4, 0, 0])) { XCTAssertTrue("\($0)".contains("flags")) }
        XCTAssertThrowsError(try sealed(type: 9, body: [])) { XCTAssertTrue("\($0)".contains("unknown message type 9")) }
        XCTAssertThrowsError(try sealed(type: 4, body: [])) { XCTAssertTrue("\($0)".contains("a proof where a message was due")) }
        XCTAssertThrowsError(try sealed(type: 3, body: [0, 1] + [UInt8](repeating: 0, count: 32) + [0, 0, 0, 0, 0, 0])) {
            XCTAssertTrue("\($0)".contains("port 0"))
        }
    }
}
