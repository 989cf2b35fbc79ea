import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

/// pen's access lists: every `acl` form parsed and written back, every malformed form refused
/// with its reason, and matching as pen's acl.c does it.
final class AccessListTests: XCTestCase {
    // MARK: Parsing and formatting

    func testEveryFormParsesAndFormatsBackToTheSameRule() throws {
        let cases: [(words: String, list: Int, rule: AccessRule, written: String)] = [
            ("0 permit 192.0.2.1", 0, try ipv4(.permit, 0xC000_0201, 0xFFFF_FFFF), "permit 192.0.2.1 255.255.255.255"),
            ("3 deny 192.0.2.0 255.255.255.0", 3, try ipv4(.deny, 0xC000_0200, 0xFFFF_FF00), "deny 192.0.2.0 255.255.255.0"),
            ("9 permit 0.0.0.0 0.0.0.0", 9, try ipv4(.permit, 0, 0), "permit 0.0.0.0 0.0.0.0"),
            ("5 deny 198.51.100.0 255.255.255.128", 5, try ipv4(.deny, 0xC633_6400, 0xFFFF_FF80),
             "deny 198.51.100.0 255.255.255.128"),
            ("4 permit 0.0.0.7 0.0.0.255", 4, try ipv4(.permit, 7, 0xFF), "permit 0.0.0.7 0.0.0.255"),
            ("1 permit 2001:db8::1", 1, try ipv6(.permit, 0x2001_0DB8_0000_0000, 1, 128), "permit 2001:db8::1/128"),
            ("2 deny 2001:db8::/32", 2, try ipv6(.deny, 0x2001_0DB8_0000_0000, 0, 32), "deny 2001:db8::/32"),
            ("6 permit 2001:DB8:0:0::5/128", 6, try ipv6(.permit, 0x2001_0DB8_0000_0000, 5, 128), "permit 2001:db8::5/128"),
            ("7 deny 2001:db8::/127", 7, try ipv6(.deny, 0x2001_0DB8_0000_0000, 0, 127), "deny 2001:db8::/127"),
            ("8 permit 8000::/1", 8, try ipv6(.permit, 0x8000_0000_0000_0000, 0, 1), "permit 8000::/1"),
            ("0 deny ::/0", 0, try ipv6(.deny, 0, 0, 0), "deny ::/0"),
            ("0 permit ::1", 0, try ipv6(.permit, 0, 1, 128), "permit ::1/128"),
            ("0 permit 2001:db8:0:1::/64", 0, try ipv6(.permit, 0x2001_0DB8_0000_0001, 0, 64), "permit 2001:db8:0:1::/64"),
        ]
        for (words, list, rule, written) in cases {
            let parsed = try AccessRule.parse(words: split(words))
            XCTAssertEqual(parsed.list, list, words)
            XCTAssertEqual(parsed.rule, rule, words)
            XCTAssertEqual(rule.words.joined(separator: " "), written, words)
            let again = try AccessRule.parse(words: [String(list)] + rule.words)
            XCTAssertEqual(again.list, list, "round trip of '\(words)' via '\(written)'")
            XCTAssertEqual(again.rule, rule, "round trip of '\(words)' via '\(written)'")
        }
    }

    func testMalformedRulesAreRefusedWithTheirReason() {
        let cases: [(words: String, message: String)] = [
            ("", "acl needs: N permit|deny ADDRESS [MASK]"),
            ("0", "acl needs: N permit|deny ADDRESS [MASK]"),
            ("0 permit", "acl needs: N permit|deny ADDRESS [MASK]"),
            ("10 permit 192.0.2.1", "access list number must be 0-9, not '10'"),
            ("-1 permit 192.0.2.1", "access list number must be 0-9, not '-1'"),
            ("x permit 192.0.2.1", "access list number must be 0-9, not 'x'"),
            ("allow permit 192.0.2.1", "access list number must be 0-9, not 'allow'"),
            ("0 allow 192.0.2.1", "acl action must be permit or deny, not 'allow'"),
            ("0 Permit 192.0.2.1", "acl action must be permit or deny, not 'Permit'"),
            ("0 permit country SE", "acl country entries need GeoIP, which penha does not have"),
            ("0 permit 192.0.2", "bad IPv4 address '192.0.2' in acl"),
            ("0 permit 192.0.2.256", "bad IPv4 address '192.0.2.256' in acl"),
            ("0 permit host.example", "bad IPv4 address 'host.example' in acl"),
            ("0 permit 192.0.2.0/24", "bad IPv4 address '192.0.2.0/24' in acl: IPv4 entries take a dotted mask"),
            ("0 permit 192.0.2.0 24", "bad acl mask '24': expected a dotted mask"),
            ("0 permit 192.0.2.0 255.255.255.256", "bad acl mask '255.255.255.256'"),
            ("0 permit 192.0.2.0 ffff::", "bad acl mask 'ffff::'"),
            ("0 permit 192.0.2.0 255.255.255.0 extra", "unexpected 'extra' after the acl mask"),
            ("0 permit 192.0.2.5 255.255.255.0",
             "acl address 192.0.2.5 has bits outside its mask 255.255.255.0 and would match nothing: use 192.0.2.0"),
            ("0 permit 192.0.2.1 0.0.0.0", "has bits outside its mask 0.0.0.0 and would match nothing: use 0.0.0.0"),
            ("0 permit 2001:db8::g", "bad IPv6 address '2001:db8::g' in acl"),
            ("0 permit fe80::1%eth0", "bad IPv6 address 'fe80::1%eth0' in acl: zones (%IF) are not supported"),
            ("0 permit 2001:db8::/", "acl prefix length must be 0-128, not ''"),
            ("0 permit 2001:db8::/129", "acl prefix length must be 0-128, not '129'"),
            ("0 permit 2001:db8::/-1", "acl prefix length must be 0-128, not '-1'"),
            ("0 permit 2001:db8::/+8", "acl prefix length must be 0-128, not '+8'"),
            ("0 permit 2001:db8::/abc", "acl prefix length must be 0-128, not 'abc'"),
            ("0 permit 2001:db8::/32/5", "acl prefix length must be 0-128, not '32/5'"),
            ("0 permit 2001:db8:: ffff::", "unexpected 'ffff::' after the IPv6 acl address"),
            ("0 permit ::ffff:192.0.2.1", "acl address ::ffff:192.0.2.1 is IPv4-mapped: write it as an IPv4 entry"),
            ("0 permit ::ffff:0:0/96", "acl address ::ffff:0.0.0.0 is IPv4-mapped"),
            ("0 permit 2001:db8::1/32",
             "acl address 2001:db8::1/32 has bits outside its prefix and would match nothing: use 2001:db8::/32"),
            ("0 permit 2001:db8::/0", "use ::/0"),
            ("0 permit 2001:db8::1/127", "use 2001:db8::/127"),
        ]
        for (words, message) in cases {
            XCTAssertThrowsError(try AccessRule.parse(words: split(words)), words) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(message), "'\(words)' gave '\(text)', expected '\(message)'")
            }
        }
    }

    func testRulesBuiltDirectlyAreCheckedToo() {
        let address = ClientKey(high: 0x2001_0DB8_0000_0000, low: 0)
        for length in [-1, 129] {
            XCTAssertThrowsError(try AccessRule(.permit, .ipv6(address: address, prefixLength: length))) { error in
                XCTAssertEqual(error as? ConfigurationError, ConfigurationError("acl prefix length must be 0-128, not \(length)"))
            }
        }
        XCTAssertThrowsError(try AccessRule(.deny, .ipv4(address: 0xC000_0201, mask: 0xFFFF_FF00)))
        XCTAssertNoThrow(try AccessRule(.deny, .ipv6(address: address, prefixLength: 32)))
    }

    func testListNumbersAreZeroToNine() throws {
        XCTAssertEqual(try (0...9).map { try AccessLists.listNumber(String($0)) }, Array(0...9))
        XCTAssertEqual(AccessLists.count, 10)
        for text in ["10", "-1", "+1", "01", "", " 1", "x", "١"] {
            XCTAssertThrowsError(try AccessLists.listNumber(text), text) { error in
                XCTAssertEqual(error as? ConfigurationError, ConfigurationError("access list number must be 0-9, not '\(text)'"))
            }
        }
    }

    // MARK: Matching

    func testAnEmptyListPermitsEveryone() throws {
        let lists = AccessLists()
        for list in 0..<AccessLists.count {
            for address in ["192.0.2.1", "198.51.100.200", "2001:db8::1", "::1"] {
                XCTAssertTrue(lists.permits(try client(address), list: list), "\(address) on list \(list)")
            }
        }
    }

    func testFirstMatchWinsForOverlappingIPv4Ranges() throws {
        let permitThenDeny = try lists(["1 permit 192.0.2.5", "1 deny 192.0.2.0 255.255.255.0"])
        XCTAssertTrue(permitThenDeny.permits(try client("192.0.2.5"), list: 1))
        XCTAssertFalse(permitThenDeny.permits(try client("192.0.2.6"), list: 1))

        let denyThenPermit = try lists(["1 deny 192.0.2.5", "1 permit 192.0.2.0 255.255.255.0"])
        XCTAssertFalse(denyThenPermit.permits(try client("192.0.2.5"), list: 1))
        XCTAssertTrue(denyThenPermit.permits(try client("192.0.2.6"), list: 1))
    }

    func testFirstMatchWinsForOverlappingIPv6Ranges() throws {
        let permitThenDeny = try lists(["2 permit 2001:db8::5", "2 deny 2001:db8::/32"])
        XCTAssertTrue(permitThenDeny.permits(try client("2001:db8::5"), list: 2))
        XCTAssertFalse(permitThenDeny.permits(try client("2001:db8::6"), list: 2))

        let denyThenPermit = try lists(["2 deny 2001:db8::5", "2 permit 2001:db8::/32"])
        XCTAssertFalse(denyThenPermit.permits(try client("2001:db8::5"), list: 2))
        XCTAssertTrue(denyThenPermit.permits(try client("2001:db8::6"), list: 2))
    }

    /// pen's acl.c returns `!permit` of the last entry when none matches.
    func testAnUnmatchedClientGetsTheOppositeOfTheLastEntry() throws {
        let outsider = try client("198.51.100.1")
        XCTAssertFalse(try lists(["0 permit 192.0.2.0 255.255.255.0"]).permits(outsider, list: 0))
        XCTAssertTrue(try lists(["0 deny 192.0.2.0 255.255.255.0"]).permits(outsider, list: 0))
        XCTAssertFalse(try lists(["0 deny 192.0.2.1", "0 permit 192.0.2.2"]).permits(outsider, list: 0))
        XCTAssertTrue(try lists(["0 permit 192.0.2.2", "0 deny 192.0.2.1"]).permits(outsider, list: 0))
        // The last entry counts even when it is of the other family.
        XCTAssertTrue(try lists(["0 permit 192.0.2.0 255.255.255.0", "0 deny 2001:db8::/32"]).permits(outsider, list: 0))
        XCTAssertFalse(try lists(["0 deny 2001:db8::/32", "0 permit 2001:db8::1"]).permits(outsider, list: 0))
        XCTAssertFalse(try lists(["0 permit 2001:db8::/32"]).permits(try client("2001:db9::1"), list: 0))
        XCTAssertTrue(try lists(["0 deny 2001:db8::/32"]).permits(try client("2001:db9::1"), list: 0))
    }

    func testIPv4MaskBoundaries() throws {
        // Each list permits its range only: a client outside it is denied (the last entry permits).
        let acl = try lists([
            "0 permit 192.0.2.9", "1 permit 192.0.2.4 255.255.255.254", "2 permit 0.0.0.0 0.0.0.0",
            "3 permit 0.0.0.0 128.0.0.0", "4 permit 128.0.0.0 128.0.0.0", "5 permit 0.0.0.7 0.0.0.255",
            "6 permit 198.51.100.0 255.255.255.0",
        ])
        let expectations: [(list: Int, permitted: [String], denied: [String])] = [
            (0, ["192.0.2.9"], ["192.0.2.8", "192.0.2.10", "193.0.2.9"]),
            (1, ["192.0.2.4", "192.0.2.5"], ["192.0.2.3", "192.0.2.6"]),
            (2, ["0.0.0.0", "192.0.2.1", "255.255.255.255"], ["2001:db8::1"]),
            (3, ["0.0.0.0", "127.255.255.255"], ["128.0.0.0", "255.255.255.255"]),
            (4, ["128.0.0.0", "255.255.255.255"], ["127.255.255.255", "0.0.0.0"]),
            (5, ["192.0.2.7", "198.51.100.7"], ["192.0.2.8", "192.0.2.135"]),
            (6, ["198.51.100.0", "198.51.100.255"], ["198.51.99.255", "198.51.101.0"]),
        ]
        try check(acl, expectations)
    }

    func testIPv6PrefixBoundaries() throws {
        let acl = try lists([
            "0 permit 2001:db8::9/128", "1 permit 2001:db8::/127", "2 permit ::/0", "3 permit 8000::/1",
            "4 permit 2001:db8:0:1::/64", "5 permit 2001:db8:0:1:8000::/65", "6 permit 2001:db8::/32",
        ])
        let expectations: [(list: Int, permitted: [String], denied: [String])] = [
            (0, ["2001:db8::9"], ["2001:db8::8", "2001:db8::a", "2001:db9::9"]),
            (1, ["2001:db8::", "2001:db8::1"], ["2001:db8::2", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"]),
            (2, ["::1", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], ["192.0.2.1", "0.0.0.0"]),
            (3, ["8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], ["7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::1"]),
            (4, ["2001:db8:0:1::", "2001:db8:0:1:ffff:ffff:ffff:ffff"], ["2001:db8::ffff:ffff:ffff:ffff", "2001:db8:0:2::"]),
            (5, ["2001:db8:0:1:8000::", "2001:db8:0:1:ffff:ffff:ffff:ffff"], ["2001:db8:0:1:7fff:ffff:ffff:ffff"]),
            (6, ["2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"], ["2001:db7:ffff::", "2001:db9::"]),
        ]
        try check(acl, expectations)
    }

    func testIPv4EntriesMatchIPv4ClientsAlsoWhenTheyArriveMapped() throws {
        let acl = try lists(["0 deny 192.0.2.0 255.255.255.0", "0 permit 0.0.0.0 0.0.0.0"])
        let mapped = try client("::ffff:192.0.2.1")
        XCTAssertEqual(mapped, try client("192.0.2.1"), "ClientKey stores IPv4 mapped")
        XCTAssertFalse(acl.permits(mapped, list: 0))
        XCTAssertTrue(acl.permits(try client("::ffff:198.51.100.1"), list: 0))
        // An IPv6 client with the same low bits is not an IPv4 client: no entry matches it.
        XCTAssertFalse(acl.permits(ClientKey(high: 0, low: 0xFFFE_C000_0201), list: 0))
    }

    func testIPv6EntriesDoNotMatchIPv4Clients() throws {
        // ::/0 covers ::ffff:0:0/96 bit by bit, but as in pen IPv6 entries only see IPv6 clients.
        let acl = try lists(["0 permit ::/0", "1 deny ::/0"])
        XCTAssertFalse(acl.permits(try client("192.0.2.1"), list: 0))
        XCTAssertTrue(acl.permits(try client("2001:db8::1"), list: 0))
        XCTAssertTrue(acl.permits(try client("192.0.2.1"), list: 1))
        XCTAssertFalse(acl.permits(try client("2001:db8::1"), list: 1))
    }

    func testUnixSocketClientsArePermittedAsInPen() throws {
        let acl = try lists(["0 permit 192.0.2.1", "1 deny ::/0", "1 deny 0.0.0.0 0.0.0.0", "1 permit 2001:db8::1"])
        XCTAssertTrue(acl.permits(.local, list: 0))
        XCTAssertTrue(acl.permits(.local, list: 1))
        XCTAssertFalse(acl.permits(try client("198.51.100.1"), list: 0))
    }

    func testListsAreIndependent() throws {
        let acl = try lists(["3 deny 192.0.2.1", "4 permit 198.51.100.1"])
        XCTAssertFalse(acl.permits(try client("192.0.2.1"), list: 3))
        XCTAssertTrue(acl.permits(try client("192.0.2.1"), list: 2))
        XCTAssertFalse(acl.permits(try client("192.0.2.1"), list: 4))
        XCTAssertTrue(acl.permits(try client("198.51.100.1"), list: 4))
    }

    func testNoACLEmptiesOnlyThatList() throws {
        var acl = try lists(["1 permit 192.0.2.1", "1 deny 2001:db8::/32", "2 deny 192.0.2.1"])
        acl.clear(1)
        XCTAssertEqual(acl.lists[1], [])
        XCTAssertTrue(acl.permits(try client("198.51.100.1"), list: 1), "an emptied list permits")
        XCTAssertTrue(acl.permits(try client("2001:db8::1"), list: 1))
        XCTAssertFalse(acl.permits(try client("192.0.2.1"), list: 2), "other lists keep their entries")
        XCTAssertEqual(acl.lists[2].count, 1)
        acl.clear(1)
        XCTAssertEqual(acl, try lists(["2 deny 192.0.2.1"]), "clearing an empty list changes nothing")
    }

    // MARK: Writing

    func testCommandsWriteEveryRuleInListOrder() throws {
        XCTAssertEqual(AccessLists().commands.map(\.text), [])
        let acl = try lists([
            "7 deny 2001:db8::/32", "0 permit 192.0.2.0 255.255.255.0", "7 permit 198.51.100.7",
            "0 deny 0.0.0.0 0.0.0.0", "3 permit ::/0",
        ])
        XCTAssertEqual(acl.commands.map(\.text), [
            "no acl 0",
            "acl 0 permit 192.0.2.0 255.255.255.0",
            "acl 0 deny 0.0.0.0 0.0.0.0",
            "no acl 3",
            "acl 3 permit ::/0",
            "no acl 7",
            "acl 7 deny 2001:db8::/32",
            "acl 7 permit 198.51.100.7 255.255.255.255",
        ])
    }

    /// Reading the written lines into lists that already hold entries (a reload) gives back
    /// exactly the lists that were written.
    func testWrittenCommandsRecreateTheLists() throws {
        let written = try lists([
            "9 deny 192.0.2.128 255.255.255.128", "9 permit 192.0.2.0 255.255.255.0", "1 deny 2001:db8::1",
            "1 permit 2001:db8::/32", "9 deny 8000::/1",
        ])
        var reloaded = try lists(["9 permit 198.51.100.1", "1 deny 192.0.2.1"])
        for command in written.commands {
            let read = try Command.parse(command.text)
            if let clear = read.payload(as: ClearAccessList.self) {
                reloaded.clear(clear.list)
            } else if let append = read.payload(as: AccessRuleChange.self) {
                reloaded.append(append.rule, to: append.list)
            } else {
                XCTFail("'\(command.text)' is not an acl command")
            }
        }
        XCTAssertEqual(reloaded, written)
    }

    // MARK: Helpers

    private func split(_ text: String) -> [String] {
        text.split(separator: " ").map(String.init)
    }

    private func client(_ address: String) throws -> ClientKey {
        ClientKey(try SocketAddress(ipAddress: address, port: 0))
    }

    private func ipv4(_ action: AccessRule.Action, _ address: UInt32, _ mask: UInt32) throws -> AccessRule {
        try AccessRule(action, .ipv4(address: address, mask: mask))
    }

    private func ipv6(_ action: AccessRule.Action, _ high: UInt64, _ low: UInt64, _ length: Int) throws -> AccessRule {
        try AccessRule(action, .ipv6(address: ClientKey(high: high, low: low), prefixLength: length))
    }

    /// Lists built from `acl` lines without the leading word.
    private func lists(_ lines: [String]) throws -> AccessLists {
        var lists = AccessLists()
        for line in lines {
            let (list, rule) = try AccessRule.parse(words: split(line))
            lists.append(rule, to: list)
        }
        return lists
    }

    private func check(_ lists: AccessLists, _ expectations: [(list: Int, permitted: [String], denied: [String])],
                       file: StaticString = #filePath, line: UInt = #line) throws {
        for (list, permitted, denied) in expectations {
            for address in permitted {
                XCTAssertTrue(lists.permits(try client(address), list: list), "\(address) on list \(list)", file: file, line: line)
            }
            for address in denied {
                XCTAssertFalse(lists.permits(try client(address), list: list), "\(address) on list \(list)", file: file, line: line)
            }
        }
    }
}
