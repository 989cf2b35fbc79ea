import TestSupport
import VRRPCore
import XCTest
@testable import BalancerCore

/// The handover's wire format (issue 20): what is encoded reads back as itself, and a
/// malformed, truncated or oversized frame is refused with a reason, never read in part.
final class HandoverMessageTests: XCTestCase {
    private func connection(_ random: inout SplitMix64) -> HandedOverConnection {
        let toServerEnded = Bool.random(using: &random), toClientEnded = Bool.random(using: &random)
        let toServerShut = toServerEnded && Bool.random(using: &random), toClientShut = toClientEnded && Bool.random(using: &random)
        let targets: [Target] = [.server(Int(random.next() % 100)), .emergency, .abuse]
        return HandedOverConnection(
            client: Bool.random(using: &random) ? IPAddress(ipv4: UInt32(truncatingIfNeeded: random.next()))
                : IPAddress(high: random.next(), low: random.next()),
            clientPort: UInt16(truncatingIfNeeded: random.next()),
            target: targets[Int(random.next() % 3)],
            connectedAt: random.next(),
            toServer: HandedOverFlow(pending: toServerShut ? [] : bytes(Int(random.next() % 300), &random),
                                     sourceEnded: toServerEnded, shutDown: toServerShut),
            toClient: HandedOverFlow(pending: toClientShut ? [] : bytes(Int(random.next() % 300), &random),
                                     sourceEnded: toClientEnded, shutDown: toClientShut),
            requestUnlogged: Bool.random(using: &random), rewritesForwardedFor: Bool.random(using: &random))
    }

    private func bytes(_ count: Int, _ random: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// Decodes a whole frame, with `descriptors` as SCM_RIGHTS would have delivered them.
    private func decode(_ frame: [UInt8], descriptors: Int? = nil) throws(HandoverError) -> HandoverMessage {
        let header = try HandoverFrameHeader(frame.prefix(HandoverMessage.headerSize))
        return try HandoverMessage.decode(header, body: frame.dropFirst(HandoverMessage.headerSize),
                                          descriptors: descriptors ?? header.descriptorCount)
    }

    private func refusal(_ frame: [UInt8], descriptors: Int? = nil) -> HandoverError? {
        do {
            _ = try decode(frame, descriptors: descriptors)
            return nil
        } catch {
            return error
        }
    }

    func testEveryMessageReadsBackAsItself() throws {
        var random = SplitMix64(seed: 0x4A4D_0020)
        var messages: [HandoverMessage] = [.listener, .accepting, .done, .adopted, .refused("vrrp instances do not move"), .bgpWithdrawn,
                                           .connections([]),
                                           .connections([HandedOverConnection(client: .local, clientPort: 0, target: .server(0), connectedAt: 0,
                                                                              toServer: HandedOverFlow(), toClient: HandedOverFlow(),
                                                                              requestUnlogged: false)])]
        for _ in 0..<200 {
            messages.append(.connections((0..<Int(random.next() % 20)).map { _ in connection(&random) }))
        }
        messages.append(.connections((0..<HandoverMessage.maxConnections).map { _ in connection(&random) }))
        messages.append(.clients([]))
        messages.append(.clients((0..<500).map { index in
            HandedOverClient(key: IPAddress(ipv4: UInt32(index)), server: index % 3 == 0 ? nil : Int(random.next() % 1000),
                             lastUsed: random.next(), connections: random.next(), sent: random.next(), received: random.next())
        }))
        messages.append(.counters(HandedOverCounters(connections: 7, refusedClients: 2, servers: [])))
        messages.append(.vrrp([]))
        messages.append(.vrrp([VRRPResumption(interface: "eth0", vrid: 51, family: .v4, nextAdvertisement: VRRPInstant(nanoseconds: random.next())),
                               VRRPResumption(interface: "bond0.100", vrid: 255, family: .v6, nextAdvertisement: nil),
                               VRRPResumption(interface: String(repeating: "e", count: 15), vrid: 1, family: .v4, nextAdvertisement: nil)]))
        messages.append(.counters(HandedOverCounters(connections: random.next(), refusedClients: random.next(), servers: (0..<40).map { _ in
            HandedOverCounters.Server(connections: random.next(), sent: random.next(), received: random.next())
        })))
        for message in messages {
            let frame = message.encoded()
            XCTAssertEqual(try decode(frame), message)
            XCTAssertEqual(try HandoverFrameHeader(frame.prefix(12)).descriptorCount, message.descriptorCount)
        }
    }

    /// A reason that is not UTF-8 reads as U+FFFD, three bytes each: it is bounded again, at a
    /// scalar, so that what was read encodes within the bound and reads back as itself (the
    /// fuzzer found 1,024 invalid bytes re-encoded as 3,072 and cut inside a scalar).
    func testARefusalsReasonReadsBackAsItselfWhateverItsBytes() throws {
        for bytes in [[UInt8](repeating: 0xFF, count: HandoverMessage.maxReasonBytes), Array(String(repeating: "é", count: 512).utf8),
                      [0x61] + Array(String(repeating: "é", count: 511).utf8) + [0xC3]] {
            // The header of a refusal with a reason of that many bytes.
            let header = try HandoverFrameHeader(HandoverMessage.refused(String(repeating: "a", count: bytes.count)).encoded()
                .prefix(HandoverMessage.headerSize))
            let read = try HandoverMessage.decode(header, body: bytes[...], descriptors: 0)
            let encoded = read.encoded()
            XCTAssertLessThanOrEqual(encoded.count - HandoverMessage.headerSize, HandoverMessage.maxReasonBytes)
            let again = try HandoverMessage.decode(try HandoverFrameHeader(encoded.prefix(HandoverMessage.headerSize)),
                                                   body: encoded.dropFirst(HandoverMessage.headerSize), descriptors: 0)
            XCTAssertEqual(again, read)
        }
    }

    func testAFullBatchTakesAtMostSCMMaxFDDescriptors() {
        var random = SplitMix64(seed: 7)
        let batch = HandoverMessage.connections((0..<HandoverMessage.maxConnections).map { _ in connection(&random) })
        XCTAssertLessThanOrEqual(batch.descriptorCount, 253, "SCM_MAX_FD")
    }

    func testBatchesStayWithinTheCountAndTheBodyBound() {
        var random = SplitMix64(seed: 11)
        let small = (0..<300).map { _ in connection(&random) }
        XCTAssertEqual(HandoverMessage.batches(small).map(\.count), [126, 126, 48])
        XCTAssertEqual(HandoverMessage.batches(small).flatMap { $0 }, small, "in order, none lost")
        let full = HandedOverFlow(pending: [UInt8](repeating: 1, count: HandoverMessage.maxPendingBytes))
        let large = (0..<20).map { _ in
            HandedOverConnection(client: .local, clientPort: 0, target: .server(1), connectedAt: 0, toServer: full, toClient: full,
                                 requestUnlogged: false)
        }
        let batches = HandoverMessage.batches(large)
        XCTAssertEqual(batches.flatMap { $0 }.count, 20)
        for batch in batches {
            XCTAssertLessThanOrEqual(HandoverMessage.connections(batch).encoded().count - 12, HandoverMessage.maxBodySize)
        }
        XCTAssertEqual(HandoverMessage.batches([]).count, 0)
    }

    func testEveryTruncationIsRefused() {
        var random = SplitMix64(seed: 3)
        let frame = HandoverMessage.connections((0..<3).map { _ in connection(&random) }).encoded()
        for length in 0..<frame.count {
            let cut = Array(frame.prefix(length))
            if length < 12 {
                XCTAssertThrowsError(try HandoverFrameHeader(cut), "a header of \(length) bytes")
            } else {
                // The header announces the whole body: a shorter one is refused.
                XCTAssertEqual(refusal(cut), .malformed("a body of \(length - 12) bytes, \(frame.count - 12) announced"))
            }
        }
    }

    func testABodyThatLiesAboutItsContentIsRefused() {
        var random = SplitMix64(seed: 5)
        let one = connection(&random)
        // The same body with its length fixed up: only the content is wrong.
        func reframed(_ body: [UInt8], kind: UInt8 = 3, descriptors: UInt16 = 2) -> [UInt8] {
            var frame = HandoverMessage.magic + [HandoverMessage.version, kind]
            frame += [UInt8(descriptors >> 8), UInt8(descriptors & 0xff)]
            let length = UInt32(body.count)
            frame += [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
            return frame + body
        }
        let body = Array(HandoverMessage.connections([one]).encoded().dropFirst(12))
        XCTAssertEqual(refusal(reframed(body + [0])), .malformed("1 bytes after the message"))
        XCTAssertEqual(refusal(reframed([0, 2] + [UInt8](repeating: 0, count: 40))), .malformed("2 connections in 40 bytes"))
        XCTAssertEqual(refusal(reframed([0, 2] + body.dropFirst(2))), .malformed("a message cut short"))
        XCTAssertEqual(refusal(reframed([0, 127] + [UInt8](repeating: 0, count: 127 * 40))), .tooLarge("127 connections in one batch"))
        var badFlags = body
        badFlags[2 + 31] = 64
        XCTAssertEqual(refusal(reframed(badFlags)), .malformed("unknown connection flags 64"))
        badFlags[2 + 31] = 2
        XCTAssertEqual(refusal(reframed(badFlags)), .malformed("an end passed on before its source ended"))
        var badTarget = body
        badTarget[2 + 18] = 3
        XCTAssertThrowsError(try decode(reframed(badTarget)), "an unknown target kind")
        var farServer = body
        farServer.replaceSubrange(2 + 18..<2 + 23, with: [0, 0xff, 0xff, 0xff, 0xff])
        XCTAssertEqual(refusal(reframed(farServer)), .malformed("target 0 4294967295"))
        var oversized = body
        oversized.replaceSubrange(2 + 32..<2 + 36, with: [0, 0x10, 0, 1])
        XCTAssertEqual(refusal(reframed(oversized)), .tooLarge("\(HandoverMessage.maxPendingBytes + 1) pending bytes"))
        XCTAssertEqual(refusal(reframed([], kind: 4, descriptors: 1)), .malformed("1 descriptors where the message takes 0"))
        XCTAssertEqual(refusal(reframed([1], kind: 4, descriptors: 0)), .malformed("1 bytes after the message"))
        XCTAssertEqual(refusal(reframed([UInt8](repeating: 65, count: 1025), kind: 6, descriptors: 0)), .tooLarge("a reason of 1025 bytes"))
    }

    func testClientsAndCountersOutOfTheirBoundsAreRefused() {
        func frame(_ kind: UInt8, _ body: [UInt8]) -> [UInt8] {
            let length = UInt32(body.count)
            return HandoverMessage.magic + [HandoverMessage.version, kind, 0, 0,
                                            UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)] + body
        }
        XCTAssertEqual(refusal(frame(7, [0, 1, 0x86, 0xa1])), .tooLarge("100001 clients in one frame"))
        XCTAssertEqual(refusal(frame(7, [0, 0, 0, 2] + [UInt8](repeating: 0, count: 52))), .malformed("2 clients in 52 bytes"))
        var farServer = [0, 0, 0, 1] + [UInt8](repeating: 0, count: 52)
        farServer.replaceSubrange(20..<24, with: [0, 0x10, 0, 1])
        XCTAssertEqual(refusal(frame(7, farServer)), .malformed("server \((1 << 20) + 1)"))
        XCTAssertEqual(refusal(frame(8, [UInt8](repeating: 0, count: 16) + [0, 1, 0, 1])), .tooLarge("65537 servers' counters"))
        XCTAssertEqual(refusal(frame(8, [UInt8](repeating: 0, count: 16) + [0, 0, 0, 1])), .malformed("1 servers' counters in 0 bytes"))
        XCTAssertEqual(refusal(frame(8, [UInt8](repeating: 0, count: 10))), .malformed("a message cut short"))
        let eth0 = Array("eth0".utf8)
        XCTAssertNil(refusal(frame(9, [1, 51, 4, 1, 0, 0, 0, 0, 0, 0, 0, 9, 4] + eth0)), "a master of vrid 51 on eth0")
        XCTAssertEqual(refusal(frame(9, [1, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 9, 4] + eth0)),
                       .malformed("VRRP instance 0, family 4, state 1, a name of 4 bytes"))
        XCTAssertEqual(refusal(frame(9, [1, 51, 5, 1, 0, 0, 0, 0, 0, 0, 0, 9, 4] + eth0)),
                       .malformed("VRRP instance 51, family 5, state 1, a name of 4 bytes"))
        XCTAssertEqual(refusal(frame(9, [1, 51, 4, 0, 0, 0, 0, 0, 0, 0, 0, 9, 4] + eth0)),
                       .malformed("VRRP instance 51, family 4, state 0, a name of 4 bytes"), "a backup has no advert due")
        XCTAssertEqual(refusal(frame(9, [1, 51, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16] + [UInt8](repeating: 97, count: 16))),
                       .malformed("VRRP instance 51, family 4, state 0, a name of 16 bytes"))
        XCTAssertEqual(refusal(frame(9, [1, 51, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4] + Array("et/0".utf8))),
                       .malformed("an interface name that is not one"))
        XCTAssertEqual(refusal(frame(9, [2, 51, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4] + eth0)), .malformed("a message cut short"))
    }

    func testTheHeaderRefusesWhatItCanTellAlone() {
        let frame = HandoverMessage.done.encoded()
        var badMagic = frame
        badMagic[0] = 0x50 ^ 1
        XCTAssertEqual(refusal(badMagic), .malformed("not a handover frame (bad magic)"))
        var otherVersion = frame
        otherVersion[4] = 2
        XCTAssertEqual(refusal(otherVersion), .version(2))
        var unknownKind = frame
        unknownKind[5] = 11
        XCTAssertEqual(refusal(unknownKind), .malformed("unknown kind 11"))
        var manyDescriptors = frame
        manyDescriptors[6] = 1
        XCTAssertEqual(refusal(manyDescriptors), .tooLarge("256 descriptors"))
        var longBody = frame
        longBody[8] = 1
        XCTAssertEqual(refusal(longBody), .tooLarge("a body of \(1 << 24) bytes"))
    }

    func testDescriptorsOtherThanTheFrameAnnouncedAreRefused() {
        XCTAssertEqual(refusal(HandoverMessage.listener.encoded(), descriptors: 0),
                       .malformed("0 descriptors with a frame that announced 1"))
        XCTAssertEqual(refusal(HandoverMessage.connections([]).encoded(), descriptors: 2),
                       .malformed("2 descriptors with a frame that announced 0"))
    }

    func testTheReceptionTakesTheListenerThenConnectionsThenDone() throws {
        var random = SplitMix64(seed: 9)
        let batch = (0..<3).map { _ in connection(&random) }
        var reception = HandoverReception()
        let clients = [HandedOverClient(key: IPAddress(ipv4: 1), server: 2, lastUsed: 3, connections: 4, sent: 5, received: 6)]
        let counters = HandedOverCounters(connections: 9, refusedClients: 1, servers: [])
        XCTAssertEqual(try reception.receive(.listener), .adoptListener)
        XCTAssertEqual(try reception.receive(.clients(clients)), .restoreClients(clients))
        XCTAssertEqual(try reception.receive(.connections(batch)), .adoptConnections(batch))
        XCTAssertEqual(try reception.receive(.connections(batch)), .adoptConnections(batch))
        XCTAssertEqual(try reception.receive(.counters(counters)), .addCounters(counters))
        XCTAssertEqual(try reception.receive(.bgpWithdrawn), .holdBGPWithdrawn)
        XCTAssertFalse(reception.isAdopted)
        XCTAssertEqual(try reception.receive(.done), .adopted(connections: 6))
        XCTAssertTrue(reception.isAdopted)
        XCTAssertFalse(reception.isFinished, "the VRRP instances come after `adopted`")
        var early = HandoverReception()
        XCTAssertThrowsError(try early.receive(.vrrp([])), "not before the listener")
        let vrrp = [VRRPResumption(interface: "eth0", vrid: 51, family: .v4, nextAdvertisement: VRRPInstant(nanoseconds: 9))]
        XCTAssertEqual(try reception.receive(.vrrp(vrrp)), .resumeVRRP(vrrp))
        XCTAssertTrue(reception.isFinished)
        XCTAssertThrowsError(try reception.receive(.done), "nothing after the end")
    }

    func testTheReceptionRefusesAnythingOutOfOrder() {
        let outOfOrder: [[HandoverMessage]] = [[.connections([])], [.done], [.listener, .listener], [.adopted], [.clients([])],
                                              [.listener, .accepting], [.refused("no")], [.listener, .refused("no")], [.bgpWithdrawn],
                                              [.listener, .done, .bgpWithdrawn]]
        for messages in outOfOrder {
            var reception = HandoverReception()
            var refused = false
            for message in messages {
                do {
                    _ = try reception.receive(message)
                } catch {
                    refused = true
                    XCTAssertThrowsError(try reception.receive(.done), "a failed reception stays failed: \(messages)")
                    break
                }
            }
            XCTAssertTrue(refused, "\(messages)")
        }
    }
}

/// What refuses a handover before anything moves: the old process answers with the reason.
final class HandoverPolicyTests: XCTestCase {
    private let plain = Configuration(listen: .inet(host: "127.0.0.1", port: 8080), servers: [])

    func testAPlainTCPBalancerOfTheSameUserMayHandOver() {
        XCTAssertNil(HandoverPolicy.refusal(for: plain, draining: false, requester: 1000, own: 1000))
    }

    /// `penha upgrade` as root of a penha that gave root up with `-u`.
    func testRootMayTakeOverFromAnotherUser() {
        XCTAssertNil(HandoverPolicy.refusal(for: plain, draining: false, requester: 0, own: 65534))
    }

    func testAnotherUserAStoppingPenhaAndWhatDoesNotMoveAreRefused() {
        XCTAssertEqual(HandoverPolicy.refusal(for: plain, draining: false, requester: 1001, own: 1000),
                       "only root or penha's own user (uid 1000) may take over, not uid 1001")
        XCTAssertEqual(HandoverPolicy.refusal(for: plain, draining: true, requester: 5, own: 5), "penha is stopping")
        var udp = plain
        udp.udp = true
        XCTAssertEqual(HandoverPolicy.refusal(for: udp, draining: false, requester: 5, own: 5), "UDP (-U) flows do not move to another process")
    }

    func testVRRPInstancesMoveUnlessASecondChanceWindowIsOpen() throws {
        var vrrp = plain
        vrrp.vrrpInstances = [try VRRPInstanceConfiguration.parse(["interface", "eth0", "vrid", "51", "priority", "200",
                                                                    "vip", "192.0.2.10/24", "second_chance", "02:00:00:00:00:02"])]
        XCTAssertNil(HandoverPolicy.refusal(for: vrrp, draining: false, requester: 5, own: 5), "no window open: nothing in the kernel")
        let open = OpenSecondChanceWindow(interface: "eth0", vrid: 51, secondsLeft: 12)
        XCTAssertEqual(HandoverPolicy.refusal(for: vrrp, draining: false, openWindows: [open], requester: 5, own: 5),
                       "the second_chance window of vrrp vrid 51 on eth0 is open (its redirect or its VIPs on lo are in place); "
                       + "it closes in 12 s: retry then")
    }

    func testTheRequestLineNamesAnAbsolutePathThatFitsSunPath() {
        XCTAssertEqual(HandoverPolicy.requestedPath("PENHA-HANDOVER 1 /run/penha/.handover-42"), "/run/penha/.handover-42")
        XCTAssertNil(HandoverPolicy.requestedPath("PENHA-HANDOVER 1 relative"))
        XCTAssertNil(HandoverPolicy.requestedPath("PENHA-HANDOVER 1 /" + String(repeating: "a", count: 107)))
        XCTAssertNil(HandoverPolicy.requestedPath("PENHA-HANDOVER 2 /tmp/x"), "another version")
        XCTAssertNil(HandoverPolicy.requestedPath("status"))
        XCTAssertTrue(HandoverPolicy.isRequest("PENHA-HANDOVER 2 /tmp/x"), "refused as a handover, not parsed as a command")
        XCTAssertFalse(HandoverPolicy.isRequest("status"))
    }
}
