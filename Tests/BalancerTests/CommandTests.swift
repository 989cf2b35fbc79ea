import XCTest
@testable import Balancer
@testable import BalancerCore

/// Every command of the language: parsed to the right value, formatted back to a line
/// that parses to the same value, and every malformed form refused with its reason.
final class CommandTests: XCTestCase {
    func testEveryCommandParses() throws {
        let cases: [(String, Command)] = [
            ("servers", .query(.servers)), ("status", .query(.status)), ("mode", .query(.mode)),
            ("listen", .query(.listen)), ("pid", .query(.pid)), ("control", .query(.control)),
            ("server 0 address 10.0.0.1", .server(ServerChange(index: 0, address: "10.0.0.1"))),
            ("server 2 port 81 max 5 hard 9 weight 3 prio 1 blacklist 60 address www",
             .server(ServerChange(index: 2, address: "www", port: 81, maxConnections: 5, hardLimit: 9,
                                  weight: 3, priority: 1, blacklistSeconds: 60))),
            ("server 1 address [2001:db8::1]", .server(ServerChange(index: 1, address: "2001:db8::1"))),
            ("blacklist", .setting(.blacklist, nil)), ("blacklist 5", .setting(.blacklist, 5)),
            ("clients_max 10", .setting(.clientsMax, 10)), ("conn_max", .setting(.connectionsMax, nil)),
            ("timeout 2", .setting(.timeout, 2)), ("tracking 0", .setting(.tracking, 0)),
            ("idle_timeout 30", .setting(.idleTimeout, 30)), ("debug", .setting(.debug, nil)),
            ("roundrobin", .flag(.roundRobin, true)), ("no roundrobin", .flag(.roundRobin, false)),
            ("hash", .flag(.hash, true)), ("no hash", .flag(.hash, false)),
            ("weight", .flag(.weight, true)), ("no weight", .flag(.weight, false)),
            ("prio", .flag(.priority, true)), ("no prio", .flag(.priority, false)),
            ("stubborn", .flag(.stubborn, true)), ("no stubborn", .flag(.stubborn, false)),
            ("tcp_nodelay", .flag(.tcpNoDelay, true)), ("no tcp_nodelay", .flag(.tcpNoDelay, false)),
            ("http", .flag(.http, true)), ("no http", .flag(.http, false)),
            ("recent", .recent(nil)), ("recent 60", .recent(60)),
            ("connection 3", .connection(3)), ("close 4", .close(4)),
            ("log", .file(.log, .show)), ("log /var/log/penha.log", .file(.log, .set("/var/log/penha.log"))),
            ("no log", .file(.log, .off)), ("web_stats", .file(.webStats, .show)),
            ("web_stats /tmp/s.html", .file(.webStats, .set("/tmp/s.html"))), ("no web_stats", .file(.webStats, .off)),
            ("include /etc/penha/more.conf", .include("/etc/penha/more.conf")),
            ("write", .write(nil)), ("write /tmp/penha.conf", .write("/tmp/penha.conf")),
            ("exit", .exit), ("source 127.0.0.2", .source("127.0.0.2")),
            ("  servers \t\r", .query(.servers)),
            ("acl 3 deny 192.0.2.0 255.255.255.0",
             .accessRule(list: 3, try AccessRule(.deny, .ipv4(address: 0xC000_0200, mask: 0xFFFF_FF00)))),
            ("no acl 3", .clearAccessList(3)),
            ("client_acl 2", .setting(.clientACL, 2)), ("client_acl", .setting(.clientACL, nil)),
            ("control_acl 1", .setting(.controlACL, 1)),
            ("server 0 acl 4", .server(ServerChange(index: 0, acl: 4))),
            ("ssl_ciphers ECDHE+AESGCM:!aNULL", .tls(.ciphers("ECDHE+AESGCM:!aNULL"))),
            ("ssl_option no_tlsv1.2", .tls(.option(.noTLSv1_2))), ("ssl_option no_sslv3", .tls(.option(.noSSLv3))),
            ("ssl_option cipher_server_preference", .tls(.option(.cipherServerPreference))),
            ("ssl_sni_path /etc/penha/sni", .tls(.sniDirectory("/etc/penha/sni"))),
        ]
        for (line, command) in cases {
            XCTAssertEqual(try Command.parse(line), command, line)
            XCTAssertEqual(try Command.parse(command.text), command, "round trip of '\(line)' via '\(command.text)'")
        }
    }

    func testEveryMalformedCommandSaysWhy() {
        let cases: [(String, String)] = [
            ("", "empty command"), ("  ", "empty command"), ("frobnicate", "unknown command 'frobnicate'"),
            ("no", "'no' takes"), ("no servers", "'no' takes"), ("no log x", "'no' takes"),
            ("servers 1", "takes no argument"), ("status x", "takes nothing or 'json'"), ("exit now", "takes no argument"),
            ("server", "'server' needs"), ("server 0", "'server' needs"), ("server x address a", "non-negative"),
            ("server -1 address a", "non-negative"), ("server 0 address", "'server' needs"),
            ("server 0 port 0", "1-65535"), ("server 0 port 70000", "1-65535"), ("server 0 max -1", "non-negative"),
            ("server 0 weight w", "non-negative"), ("server 0 color red", "unknown field 'color'"),
            ("server 0 port 1 port 2", "given twice"), ("server 0 acl 10", "access list number must be 0-9"),
            ("server 0 acl x", "access list number must be 0-9"),
            ("recent x", "non-negative"), ("recent 1 2", "at most one"), ("connection", "one connection number"),
            ("close", "one connection number"), ("close x", "non-negative"), ("connection 1 2", "one connection number"),
            ("include", "one file name"), ("include a b", "one file name"), ("write a b", "at most one"),
            ("log a b", "at most one"), ("web_stats a b", "at most one"),
            ("acl 0 permit", "acl needs"), ("acl 0 allow 192.0.2.1", "permit or deny"),
            ("no acl", "'no acl' needs one list number"), ("no acl 1 2", "'no acl' needs one list number"),
            ("no acl 10", "access list number must be 0-9"), ("client_acl x", "non-negative"),
            ("control_acl 1 2", "at most one"),
            ("ssl_ciphers", "cipher list"), ("ssl_ciphers A B", "cipher list"), ("ssl_sni_path", "a directory"),
            ("ssl_option", "an option name"), ("ssl_option no_sslv9", "not one of: no_sslv2"),
            ("ssl_ocsp_response /etc/ocsp", "OCSP stapling is not supported"),
            ("ssl_client_renegotiation_interval 60", "renegotiation is always refused"),
        ]
        for (line, reason) in cases {
            XCTAssertThrowsError(try Command.parse(line), line) { error in
                XCTAssertTrue("\(error)".contains(reason), "'\(line)' gave '\(error)', expected '\(reason)'")
            }
        }
    }

    func testConfigFilesSkipCommentsAndNameTheLineOfAnError() throws {
        let lines = try ConfigFile.parse("# penha\n\nroundrobin # comment\n  blacklist 3\n", name: "f")
        XCTAssertEqual(lines, [ConfigLine(.flag(.roundRobin, true), origin: "f:3"), ConfigLine(.setting(.blacklist, 3), origin: "f:4")])
        XCTAssertThrowsError(try ConfigFile.parse("hash\nfrobnicate\n", name: "f")) { error in
            XCTAssertEqual("\(error)", "f:2: unknown command 'frobnicate'")
        }
        XCTAssertThrowsError(try ConfigFile.parse("include /nonexistent/penha.conf", name: "f")) { error in
            XCTAssertTrue("\(error)".contains("cannot read /nonexistent/penha.conf"), "\(error)")
        }
    }

    func testIncludeReadsTheFileAndARecursiveIncludeEnds() throws {
        let path = NSTemporaryDirectory() + "penha-include-\(getpid()).conf"
        defer { unlink(path) }
        try "hash\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ConfigFile.parse("include \(path)\nstubborn", name: "f").map(\.command),
                       [.flag(.hash, true), .flag(.stubborn, true)])
        try "include \(path)\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ConfigFile.read(path)) { error in
            XCTAssertEqual("\(error)", "\(path):1: \(path) includes itself: \(path) -> \(path)")
        }
    }
}
