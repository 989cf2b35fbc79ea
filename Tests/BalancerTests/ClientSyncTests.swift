import Foundation
import NIOCore
import XCTest
@testable import BalancerCore
import VRRPCore

/// The client-table sync's pure core: the command, the places for incoming connections, the
/// outbox, the journal, the full copy and the apply rule (the codec: `SyncSessionTests`).
final class ClientSyncCoreTests: XCTestCase {
    // MARK: the command

    func testTheSyncCommandParsesWritesBackAndIsBounded() throws {
        let line = "sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 peer [2001:db8::2]:7001 key /etc/penha/sync.key"
        guard let settings = try Command.parse(line).payload(as: SyncCommand.self)?.settings else { return XCTFail("not a sync command") }
        XCTAssertEqual(settings.listen, SyncSettings.Address(ip: IPAddress("192.0.2.1")!, port: 7000))
        XCTAssertEqual(settings.peers.map(\.description), ["192.0.2.2:7000", "[2001:db8::2]:7001"])
        XCTAssertEqual(settings.keyFile, "/etc/penha/sync.key")
        XCTAssertEqual(Command.sync(settings).text, line)
        XCTAssertEqual(try Command.parse("no sync"), .sync(nil))
        XCTAssertEqual(Command.sync(nil).text, "no sync")
        XCTAssertTrue(settings.isPeer(IPAddress("2001:db8::2")!))
        XCTAssertFalse(settings.isPeer(IPAddress("192.0.2.9")!))

        let tooMany = "sync listen 192.0.2.1:7000 " + (1...17).map { "peer 198.51.100.\($0):7000" }.joined(separator: " ") + " key k"
        for (bad, reason) in [("sync", "needs 'listen"), ("sync listen 192.0.2.1:7000 key k", "needs 'listen"),
                              ("sync listen 192.0.2.1:7000 peer 192.0.2.2:7000", "needs 'listen"),
                              ("sync listen host.example:7000 peer 192.0.2.2:7000 key k", "not a host name"),
                              ("sync listen 192.0.2.1:70000 peer 192.0.2.2:7000 key k", "not within 1-65535"),
                              ("sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 peer 192.0.2.2:7000 key k", "given twice"),
                              ("sync listen 192.0.2.1:7000 peer 192.0.2.1:7000 key k", "cannot be its peer"),
                              ("sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 key", "needs a value"),
                              ("sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 key k colour red", "unknown word"),
                              ("no sync now", "'no' takes one of"), (tooMany, "at most 16 peers")] {
            XCTAssertThrowsError(try Command.parse(bad), bad) { XCTAssertTrue("\($0)".contains(reason), "\(bad): \($0)") }
        }
    }

    func testWriteRoundTripsSyncAndNoSyncRemovesIt() throws {
        var configuration = Configuration(listen: .inet(host: "192.0.2.10", port: 80), servers: [ServerSpec(host: "192.0.2.5", port: 80)])
        let line = "sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 key /k"
        try configuration.apply(try Command.parse(line))
        XCTAssertEqual(configuration.commands.map(\.text).filter { $0.hasPrefix("sync") }, [line])
        let written = try configuration.commands.map { try Command.parse($0.text) }
        var readBack = Configuration(listen: .inet(host: "192.0.2.10", port: 80), servers: [])
        for command in written { try readBack.apply(command) }
        XCTAssertEqual(readBack.sync, configuration.sync)
        try configuration.apply(.sync(nil))
        XCTAssertNil(configuration.sync)
        XCTAssertFalse(configuration.commands.contains { $0.text.hasPrefix("sync") })
    }

    // MARK: the outbox

    private func change(_ client: UInt8, server: Int = 9000, at seconds: Double) -> SyncChange {
        SyncChange(client: ClientKey(ipv4: 0xCB00_7100 | UInt32(client)),
                   server: SyncSettings.Address(ip: IPAddress("127.0.0.1")!, port: server), lastUsed: at(seconds))
    }

    func testTheOutboxCoalescesPerClientAndSendsAges() {
        var outbox = SyncOutbox(capacity: 8)
        outbox.startFullCopy([])
        XCTAssertEqual(outbox.nextMessage(now: at(0)), .fullCopy(first: true, last: true, entries: []))
        outbox.add(change(1, server: 9000, at: 1))
        outbox.add(change(2, at: 2))
        outbox.add(change(1, server: 9001, at: 3))
        XCTAssertEqual(outbox.pendingCount, 2)
        guard case .updates(let entries) = outbox.nextMessage(now: at(4.5)) else { return XCTFail("no updates") }
        XCTAssertEqual(entries.map(\.server.port), [9001, 9000], "client 1 once, as it is last, in its first place")
        XCTAssertEqual(entries.map(\.ageMilliseconds), [1500, 2500])
        XCTAssertNil(outbox.nextMessage(now: at(5)))
        XCTAssertFalse(outbox.needsFullCopy)
    }

    func testAFullOutboxDropsTheOldestAndAsksForAFullCopy() {
        var outbox = SyncOutbox(capacity: 3)
        XCTAssertTrue(outbox.needsFullCopy, "a new peer starts with a full copy")
        outbox.startFullCopy([])
        _ = outbox.nextMessage(now: at(0))
        for client in 1...5 { outbox.add(change(UInt8(client), at: Double(client))) }
        XCTAssertEqual(outbox.pendingCount, 3)
        XCTAssertEqual(outbox.dropped, 2)
        XCTAssertTrue(outbox.needsFullCopy)
        guard case .updates(let entries) = outbox.nextMessage(now: at(6)) else { return XCTFail("no updates") }
        XCTAssertEqual(entries.map(\.client), [3, 4, 5].map { ClientKey(ipv4: 0xCB00_7100 | $0) })
    }

    func testAFullCopyIsStreamedInBoundedChunksBeforeLaterChanges() {
        var outbox = SyncOutbox()
        let count = SyncMessage.maxEntries * 2 + 5
        outbox.add(change(200, at: 0))
        outbox.startFullCopy((0..<count).map { change(UInt8($0 % 200), at: Double($0) / 1000) })
        XCTAssertEqual(outbox.pendingCount, 0, "the copy supersedes what was pending")
        outbox.add(change(201, at: 5))
        var chunks: [(Bool, Bool, Int)] = []
        while case .fullCopy(let first, let last, let entries)? = outbox.nextMessage(now: at(10)) {
            chunks.append((first, last, entries.count))
            if last { break }
        }
        XCTAssertEqual(chunks.map(\.0), [true, false, false])
        XCTAssertEqual(chunks.map(\.1), [false, false, true])
        XCTAssertEqual(chunks.map(\.2), [SyncMessage.maxEntries, SyncMessage.maxEntries, 5])
        XCTAssertEqual(outbox.nextMessage(now: at(10)), .updates([change(201, at: 5).entry(now: at(10))]))
    }

    // MARK: the journal and the apply rule

    private func state(servers: [Int], capacity: Int = 16) -> BalancerState {
        var state = makeState(Configuration(listen: .inet(host: "127.0.0.1", port: 0),
                                            servers: servers.map { ServerSpec(host: "192.0.2.5", port: $0) }), clients: capacity)
        state.clients.isJournaling = true
        return state
    }

    @discardableResult
    private func place(_ state: inout BalancerState, _ key: ClientKey, now: NIODeadline) -> Target? {
        var placement = state.accept(client: key, now: now)
        let target = state.nextTarget(&placement, now: now)
        if let target { state.connected(placement, to: target, client: "test", now: now) }
        return target
    }

    func testTheJournalRecordsEachChangedClientOnceByServerAddress() {
        var node = state(servers: [80, 81])
        place(&node, client(1), now: at(1))
        place(&node, client(2), now: at(2))
        place(&node, client(1), now: at(3))
        let changes = node.takeClientChanges()
        XCTAssertEqual(changes, [SyncChange(client: client(1), server: .init(ip: IPAddress("192.0.2.5")!, port: 80), lastUsed: at(3)),
                                 SyncChange(client: client(2), server: .init(ip: IPAddress("192.0.2.5")!, port: 81), lastUsed: at(2))])
        XCTAssertEqual(node.takeClientChanges(), [], "drained")
        node.clients.isJournaling = false
        place(&node, client(3), now: at(4))
        node.clients.isJournaling = true
        XCTAssertEqual(node.takeClientChanges(), [], "nothing is recorded without sync")
        XCTAssertEqual(BalancerState.clientSnapshot { node.clientChanges(slots: $0) }.map(\.client),
                       [client(2), client(1), client(3)], "oldest first")
    }

    func testAFullCopyIsReadInBoundedPartsAndComesOutOldestFirst() {
        let count = BalancerState.snapshotPart * 2 + 10
        var node = state(servers: [80, 81], capacity: count)
        for number in 0..<count {
            // Used in an order other than the slots': the last slots first.
            place(&node, ClientKey(ipv4: 0x0A00_0000 | UInt32(number)), now: at(Double(count - number)))
        }
        _ = node.takeClientChanges()
        var parts: [Range<Int>] = []
        let snapshot = BalancerState.clientSnapshot { slots in
            parts.append(slots)
            // The data path between two parts: a client of a part already read is used again.
            if parts.count == 2 { place(&node, ClientKey(ipv4: 0x0A00_0000), now: at(Double(count + 1))) }
            return node.clientChanges(slots: slots)
        }
        XCTAssertEqual(parts.count, 4, "three parts and the one that finds the end")
        XCTAssertTrue(parts.allSatisfy { $0.count == BalancerState.snapshotPart }, "\(parts)")
        XCTAssertEqual(snapshot.count, count)
        XCTAssertEqual(snapshot.map(\.lastUsed), snapshot.map(\.lastUsed).sorted(), "oldest first")
        XCTAssertEqual(snapshot.first?.client, ClientKey(ipv4: 0x0A00_0000 | UInt32(count - 1)))
        XCTAssertEqual(node.takeClientChanges().map(\.client), [ClientKey(ipv4: 0x0A00_0000)],
                       "what changed during the copy follows it")
    }

    func testRemoteEntriesFindTheirServerByAddressAndPortNotByIndex() {
        var master = state(servers: [80, 81, 82])
        for number in 1...6 { place(&master, client(UInt8(number)), now: at(Double(number))) }
        // The backup lists the same servers in another order, and one the master does not have.
        var backup = state(servers: [82, 83, 80, 81])
        let now = at(10)
        let applied = backup.applyRemote(master.takeClientChanges().map { $0.entry(now: now) }, now: now)
        XCTAssertEqual(applied, 6)
        for number in 1...6 {
            let key = client(UInt8(number))
            let before = master.clients.trackedServer(of: key, now: now, tracking: nil).map { master.configuration.servers[$0].port }
            let after = backup.clients.trackedServer(of: key, now: now, tracking: nil).map { backup.configuration.servers[$0].port }
            XCTAssertEqual(after, before, "client \(number)")
            guard case .server(let index)? = place(&backup, key, now: at(11)) else { return XCTFail("client \(number) not placed") }
            XCTAssertEqual(backup.configuration.servers[index].port, before, "client \(number) goes back to its server on the backup")
        }
        XCTAssertEqual(backup.applyRemote([syncEntry(1, server: 9999)], now: now), 0, "a server this node lacks is skipped")
        XCTAssertEqual(backup.takeClientChanges().count, 6, "the backup's own placements are journaled, the applied ones were not")
    }

    func testLastWriterWinsAndANewerLocalClientIsNotDisturbed() {
        var backup = state(servers: [80, 81])
        place(&backup, client(1), now: at(10))           // server 0, used at 10
        let port81 = SyncSettings.Address(ip: IPAddress("192.0.2.5")!, port: 81)
        let older = SyncEntry(client: client(1), server: port81, ageMilliseconds: 5000)   // used at 7
        XCTAssertEqual(backup.applyRemote([older], now: at(12)), 0)
        XCTAssertEqual(backup.clients.trackedServer(of: client(1), now: at(12), tracking: nil), 0, "the local entry is newer")
        let newer = SyncEntry(client: client(1), server: port81, ageMilliseconds: 500)     // used at 11.5
        XCTAssertEqual(backup.applyRemote([newer], now: at(12)), 1)
        XCTAssertEqual(backup.clients.trackedServer(of: client(1), now: at(12), tracking: nil), 1, "the newer remote entry wins")
    }

    func testAFullTableTakesARemoteEntryOnlyInPlaceOfAnOlderClient() {
        var backup = state(servers: [80], capacity: 2)
        place(&backup, client(1), now: at(5))
        place(&backup, client(2), now: at(6))
        let port80 = SyncSettings.Address(ip: IPAddress("192.0.2.5")!, port: 80)
        XCTAssertEqual(backup.applyRemote([SyncEntry(client: client(3), server: port80, ageMilliseconds: 6000)], now: at(10)), 0,
                       "used at 4: older than every local client")
        XCTAssertEqual(backup.clients.count, 2)
        XCTAssertEqual(backup.applyRemote([SyncEntry(client: client(3), server: port80, ageMilliseconds: 1000)], now: at(10)), 1)
        XCTAssertNil(backup.clients.trackedServer(of: client(1), now: at(10), tracking: nil), "the least recently used client made room")
        XCTAssertEqual(backup.clients.trackedServer(of: client(2), now: at(10), tracking: nil), 0)
        XCTAssertEqual(backup.clients.trackedServer(of: client(3), now: at(10), tracking: nil), 0)
    }

    func testAnEntryOlderThanTheTrackingTimeIsNotTaken() {
        var backup = state(servers: [80])
        backup.configuration.trackingSeconds = 60
        let port80 = SyncSettings.Address(ip: IPAddress("192.0.2.5")!, port: 80)
        XCTAssertEqual(backup.applyRemote([SyncEntry(client: client(1), server: port80, ageMilliseconds: 61_000)], now: at(100)), 0)
        XCTAssertEqual(backup.applyRemote([SyncEntry(client: client(1), server: port80, ageMilliseconds: 59_000)], now: at(100)), 1)
    }

    // MARK: the places for incoming connections

    func testConnectionsWithoutTheKeyNeverKeepTheRealPeerOut() {
        let peer = IPAddress("192.0.2.2")!
        let other = IPAddress("192.0.2.3")!
        var places = SyncPlaces<Int>(unprovenPerPeer: 4)
        for connection in 1...4 { XCTAssertNil(places.admit(connection, from: peer)) }
        XCTAssertNil(places.admit(100, from: other), "each peer has its own places")
        XCTAssertEqual(places.admit(5, from: peer), 1, "the oldest unproven connection gives its place up")
        XCTAssertNil(places.prove(5), "the peer proves the key: its one proven place")
        XCTAssertTrue(places.isProven(5))
        XCTAssertNil(places.admit(6, from: peer), "the proven connection left an unproven place free")
        for (connection, pushedOut) in [(7, 2), (8, 3), (9, 4)] {
            XCTAssertEqual(places.admit(connection, from: peer), pushedOut, "never the proven connection")
        }
        XCTAssertTrue(places.isProven(5))
        XCTAssertEqual(places.prove(9), 5, "the peer reconnected: its newer connection replaces the older")
        XCTAssertEqual(places.count, 5, "6, 7, 8 and 9 from the peer, 100 from the other")
        places.remove(7)
        places.remove(9)
        XCTAssertEqual(places.count, 3, "a closed connection frees its place at once")
        XCTAssertFalse(places.isProven(9))
        XCTAssertNil(places.prove(9), "a connection no longer held proves nothing")
        XCTAssertNil(places.admit(10, from: peer))
        XCTAssertNil(places.admit(11, from: peer), "7's place, and 9's, which it left when it proved the key")
    }
}
