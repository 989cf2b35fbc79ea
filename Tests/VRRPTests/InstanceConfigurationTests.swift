import XCTest
@testable import VRRP
@testable import VRRPCore

final class InstanceConfigurationTests: XCTestCase {
    private func parse(_ line: String) throws -> VRRPInstanceConfiguration {
        try VRRPInstanceConfiguration.parse(line.split(separator: " ").map(String.init))
    }

    func testMinimalCommandGetsTheDefaults() throws {
        let configuration = try parse("interface eth0 vrid 7 priority 100 vip 192.0.2.10/24")
        XCTAssertEqual(configuration.interface, "eth0")
        XCTAssertEqual(configuration.vrid, 7)
        XCTAssertEqual(configuration.priority, 100)
        XCTAssertEqual(configuration.virtualAddresses, [VirtualAddress("192.0.2.10/24")!])
        XCTAssertEqual(configuration.advertisementInterval, 100, "advert defaults to 1s")
        XCTAssertEqual(configuration.version, .v3)
        XCTAssertTrue(configuration.preempt)
        XCTAssertNil(configuration.serverTracking)
        XCTAssertEqual(configuration.family, .v4)
    }

    func testEveryOptionAndTheRoundTripThroughWords() throws {
        let line = "interface eth1 vrid 51 priority 150 vip 192.0.2.10/24 vip 192.0.2.11/32 advert 2s version 2 "
            + "preempt off preempt_delay 30 peer 192.0.2.2 peer 192.0.2.3 auth secret track_servers 2 weight 60 notify /usr/local/bin/vrrp-notify"
        let configuration = try parse(line)
        XCTAssertEqual(configuration.advertisementInterval, 200)
        XCTAssertEqual(configuration.version, .v2)
        XCTAssertFalse(configuration.preempt)
        XCTAssertEqual(configuration.preemptDelay, 30)
        XCTAssertEqual(configuration.peers, [IPAddress("192.0.2.2")!, IPAddress("192.0.2.3")!])
        XCTAssertEqual(configuration.password, "secret")
        XCTAssertEqual(configuration.serverTracking, .init(minimum: 2, weight: 60))
        XCTAssertEqual(configuration.notify, "/usr/local/bin/vrrp-notify")
        XCTAssertEqual(try VRRPInstanceConfiguration.parse(configuration.words), configuration)
    }

    func testAdvertIntervals() throws {
        XCTAssertEqual(try parse("interface e vrid 1 priority 1 vip 2001:db8::1/64 advert 100ms").advertisementInterval, 10)
        XCTAssertEqual(try parse("interface e vrid 1 priority 1 vip 192.0.2.1/24 advert 40950ms").advertisementInterval, 4095)
        XCTAssertEqual(try parse("interface e vrid 1 priority 1 vip 192.0.2.1/24 advert 3").advertisementInterval, 300)
        let configuration = try parse("interface e vrid 1 priority 1 vip 192.0.2.1/24 advert 250ms")
        XCTAssertEqual(try VRRPInstanceConfiguration.parse(configuration.words).advertisementInterval, 25)
    }

    func testBadCommandsSayWhatIsWrong() {
        let base = "interface e vrid 1 priority 100"
        let cases: [(String, String)] = [
            ("vrid 1 priority 1 vip 192.0.2.1/24", "interface"),
            ("interface e priority 1 vip 192.0.2.1/24", "vrid"),
            ("interface e vrid 1 vip 192.0.2.1/24", "priority"),
            (base, "vip"),
            ("interface e vrid 0 priority 1 vip 192.0.2.1/24", "vrid"),
            ("interface e vrid 1 priority 256 vip 192.0.2.1/24", "priority"),
            ("\(base) vip 192.0.2.1/33", "vip '192.0.2.1/33'"),
            ("\(base) vip nonsense", "vip 'nonsense'"),
            ("\(base) vip 192.0.2.1/24 vip 2001:db8::1/64", "all IPv4 or all IPv6"),
            ("\(base) vip 192.0.2.1/24 advert 15ms", "multiples of 10ms"),
            ("\(base) vip 192.0.2.1/24 advert 41s", "multiples of 10ms"),
            ("\(base) vip 192.0.2.1/24 version 2 advert 500ms", "whole seconds"),
            ("\(base) vip 192.0.2.1/24 advert fast", "like 1s"),
            ("\(base) vip 192.0.2.1/24 version 4", "2 or 3"),
            ("\(base) vip 2001:db8::1/64 version 2", "IPv4 only"),
            ("\(base) vip 192.0.2.1/24 auth pw", "only in VRRP version 2"),
            ("\(base) vip 192.0.2.1/24 version 2 auth ninebytes", "at most 8"),
            ("\(base) vip 192.0.2.1/24 preempt maybe", "on or off"),
            ("\(base) vip 192.0.2.1/24 peer 2001:db8::2", "family"),
            ("\(base) vip 192.0.2.1/24 peer host", "not an IP address"),
            ("\(base) vip 192.0.2.1/24 track_servers", "needs a value"),
            ("\(base) vip 192.0.2.1/24 track_servers 2 weight 0", "weight"),
            ("\(base) vip 192.0.2.1/24 colour blue", "unknown vrrp keyword 'colour'"),
        ]
        for (line, reason) in cases {
            XCTAssertThrowsError(try parse(line), line) { error in
                XCTAssertTrue("\(error)".contains(reason), "'\(line)' gave '\(error)', expected '\(reason)'")
            }
        }
    }

    /// Every number of the command is checked against its bound where it is parsed, however
    /// large: the error names the bound instead of an arithmetic overflow trapping penha.
    func testEveryNumberIsBoundedWithAnErrorNamingTheBound() {
        let base = "interface e vrid 1 priority 100 vip 192.0.2.1/24"
        let huge = "99999999999999999"
        let beyondInt = "999999999999999999999999999999"
        let cases: [(String, String)] = [
            ("\(base) advert \(huge)s", "up to 40950ms (40.95s)"),
            ("\(base) advert \(beyondInt)s", "up to 40950ms (40.95s)"),
            ("\(base) advert \(huge)ms", "up to 40950ms (40.95s)"),
            ("\(base) advert \(huge)", "up to 40950ms (40.95s)"),
            ("\(base) advert 40960ms", "up to 40950ms (40.95s)"),
            ("\(base) advert 0ms", "from 10ms"),
            ("\(base) advert -1s", "like 1s"),
            ("\(base) version 2 advert \(huge)s", "up to 255s"),
            ("\(base) version 2 advert \(beyondInt)", "up to 255s"),
            ("\(base) version 2 advert 256s", "up to 255s"),
            ("\(base) version 2 advert 0s", "from 1s"),
            ("interface e vrid \(beyondInt) priority 100 vip 192.0.2.1/24", "'vrid' must be a number in 1-255"),
            ("interface e vrid 256 priority 100 vip 192.0.2.1/24", "'vrid' must be a number in 1-255"),
            ("interface e vrid 1 priority \(beyondInt) vip 192.0.2.1/24", "'priority' must be a number in 1-255"),
            ("interface e vrid 1 priority 0 vip 192.0.2.1/24", "'priority' must be a number in 1-255"),
            ("\(base) preempt_delay \(beyondInt)", "'preempt_delay' must be a number in 0-3600"),
            ("\(base) preempt_delay 3601", "'preempt_delay' must be a number in 0-3600"),
            ("\(base) preempt_delay -1", "'preempt_delay' must be a number in 0-3600"),
            ("\(base) track_servers \(beyondInt)", "'track_servers' must be a number in 1-65535"),
            ("\(base) track_servers 65536", "'track_servers' must be a number in 1-65535"),
            ("\(base) track_servers 1 weight 255", "'weight' must be a number in 1-254"),
            ("\(base) track_servers 1 weight \(huge)", "'weight' must be a number in 1-254"),
            ("interface e vrid 1 priority 100 vip 192.0.2.1/\(beyondInt)", "LENGTH 1-32 for IPv4"),
            ("interface e vrid 1 priority 100 vip 2001:db8::1/129", "1-128 for IPv6"),
        ]
        for (line, bound) in cases {
            XCTAssertThrowsError(try parse(line), line) { error in
                XCTAssertTrue("\(error)".contains(bound), "'\(line)' gave '\(error)', expected '\(bound)'")
            }
        }
        // The bounds themselves are accepted.
        XCTAssertEqual(try parse("\(base) advert 10ms").advertisementInterval, 1)
        XCTAssertEqual(try parse("\(base) advert 40s").advertisementInterval, 4000)
        XCTAssertEqual(try parse("\(base) version 2 advert 255s").advertisementInterval, 25500)
        XCTAssertEqual(try parse("interface e vrid 255 priority 255 vip 192.0.2.1/24 preempt_delay 3600").preemptDelay, 3600)
    }

    func testEffectivePriorityDropsWhenTooFewServersAreAvailable() throws {
        let configuration = try parse("interface e vrid 1 priority 100 vip 192.0.2.1/24 track_servers 2 weight 60")
        XCTAssertEqual(configuration.effectivePriority(availableServers: 3), 100)
        XCTAssertEqual(configuration.effectivePriority(availableServers: 2), 100)
        XCTAssertEqual(configuration.effectivePriority(availableServers: 1), 40)
        let deep = try parse("interface e vrid 1 priority 50 vip 192.0.2.1/24 track_servers 1 weight 200")
        XCTAssertEqual(deep.effectivePriority(availableServers: 0), 1, "never below 1: 0 means resigning")
        let untracked = try parse("interface e vrid 1 priority 50 vip 192.0.2.1/24")
        XCTAssertEqual(untracked.effectivePriority(availableServers: 0), 50)
    }
}
