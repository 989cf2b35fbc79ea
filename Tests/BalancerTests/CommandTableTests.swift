import Foundation
import XCTest
@testable import Balancer
@testable import BalancerCore

/// The command table is the one place that knows each keyword: every entry is documented,
/// and every setting it names reaches its field, is answered and is saved by `write`.
final class CommandTableTests: XCTestCase {
    /// README's command table, with Markdown's `\|` read as `|`.
    private func readmeCommands() throws -> String {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let section = try XCTUnwrap(text.components(separatedBy: "### Commands").dropFirst().first)
        return section.components(separatedBy: "\n###").first!.replacingOccurrences(of: "\\|", with: "|")
    }

    func testEveryKeywordIsInReadmesCommandTable() throws {
        let readme = try readmeCommands()
        for keyword in CommandKeyword.table {
            guard let usage = keyword.usage else { continue }
            XCTAssertTrue(readme.contains("`\(usage)`"), "README's command table lacks `\(usage)`")
        }
    }

    /// A line of each keyword's usage with its placeholders filled in, every optional part given.
    private static let examples = [
        "acl": "acl 1 deny 192.0.2.0 255.255.255.0", "bgp": "bgp table 201 vip 192.0.2.10/32 vip 2001:db8::/64 track_servers 2", "close": "close 3", "connection": "connection 3", "exit": "exit",
        "healthcheck": "healthcheck http /health host www.example status 200-299 interval 3s timeout 1s rise 2 fall 3",
        "include": "include /etc/penha/extra.conf", "listen": "listen 127.0.0.1:8080", "metrics": "metrics 127.0.0.1:9100 acl 2",
        "recent": "recent 60", "reload": "reload", "source": "source 192.0.2.1",
        "server": "server 1 address 192.0.2.8 port 8080 max 10 hard 20 weight 2 prio 1 blacklist 5 acl 3 healthcheck off proxy_protocol v2",
        "ssl_ciphers": "ssl_ciphers ECDHE+AESGCM:CHACHA20", "ssl_option": "ssl_option no_tlsv1.1", "ssl_sni_path": "ssl_sni_path /etc/penha/sni",
        "sync": "sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 key /etc/penha/sync.key",
        "vrrp": "vrrp interface eth0 vrid 51 priority 150 vip 192.0.2.10/24", "write": "write /tmp/penha.conf",
    ]

    /// Every keyword is one entry, and a line of its usage parses to a command of that keyword
    /// that `text` writes back as a line parsing to the same command.
    func testEveryKeywordIsOneEntryAndItsUsageParses() throws {
        XCTAssertEqual(CommandKeyword.named.count, CommandKeyword.table.count, "a keyword is in the table twice")
        let generated = Command.Flag.allCases.map { ($0.rawValue, $0.rawValue) }
            + Command.Setting.allCases.map { ($0.rawValue, "\($0.rawValue) \($0.range.upperBound)") }
            + Command.FileSetting.allCases.map { ($0.rawValue, "\($0.rawValue) /tmp/penha-test-file") }
            + Command.Query.allCases.map { ($0.rawValue, $0.rawValue) }
        let examples = Self.examples.merging(generated) { given, _ in given }
        for keyword in CommandKeyword.table {
            guard let usage = keyword.usage else { continue }
            XCTAssertEqual(String(usage.prefix { $0 != " " }), keyword.name)
            guard let example = examples[keyword.name] else {
                XCTFail("no example line for '\(keyword.name)': add one to CommandTableTests.examples")
                continue
            }
            let command = try Command.parse(example)
            XCTAssertEqual(command.text.split(separator: " ").first.map(String.init), keyword.name, example)
            XCTAssertEqual(try Command.parse(command.text), command, example)
            XCTAssertTrue(Set(example.split(separator: " ")).isSubset(of: command.text.split(separator: " ")),
                          "every part of '\(example)' is kept: \(command.text)")
        }
    }

    /// Each keyword's command says what it is: a setting, which applies to the configuration
    /// and which `write` then saves, or a question or action, which a configuration refuses.
    func testEveryKeywordsCommandIsASettingThatWriteSavesOrAControlAction() throws {
        let queries = Command.Query.allCases.filter { $0 != .listen }.map(\.rawValue)
        var examples = Self.examples.merging(queries.map { ($0, $0) }) { given, _ in given }
        // `blacklist T` is running state, which `write` does not save.
        examples["server"] = "server 1 address 192.0.2.8 port 8080 max 10 hard 20 weight 2 prio 1 acl 3 healthcheck off proxy_protocol v2"
        let controls = Set(["close", "connection", "exit", "include", "recent", "reload", "write"] + queries)
        for (name, example) in examples.sorted(by: { $0.key < $1.key }) {
            let command = try Command.parse(example)
            var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [ServerSpec(host: "192.0.2.7", port: 80)])
            let isSetting = command.behaviour is any SettingCommand
            XCTAssertEqual(isSetting, !controls.contains(name), example)
            guard isSetting else {
                XCTAssertThrowsError(try configuration.apply(command), example) { error in
                    XCTAssertEqual("\(error)", "'\(command.text)' is a question or an action for the control socket, not a setting")
                }
                continue
            }
            try configuration.apply(command)
            XCTAssertTrue(configuration.commands.contains(command), "write leaves out '\(example)': \(configuration.commands)")
        }
    }

    /// What a command needs done off the event loop is said by the command itself.
    func testEachCommandNamesTheBlockingWorkItNeeds() throws {
        let needs: [String: [Command.Preparation]] = [
            "server 1 address backend.example port 80": [.resolve(host: "backend.example")], "server 1 weight 2": [],
            "log /tmp/penha.log": [.log(path: "/tmp/penha.log")], "no log": [.log(path: nil)], "log": [],
            "web_stats /tmp/stats.html": [.replaceable(path: "/tmp/stats.html")], "no web_stats": [],
            "sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 key /etc/penha/sync.key": [.syncKey(path: "/etc/penha/sync.key")],
            "no sync": [], "include /etc/penha/extra.conf": [.include(path: "/etc/penha/extra.conf")],
            "status": [.vrrpReports], "status json": [.vrrpReports], "servers": [], "timeout 5": [],
        ]
        for (line, expected) in needs {
            XCTAssertEqual(try Command.parse(line).preparation, expected, line)
        }
    }

    func testTheNoErrorListsEveryNoForm() {
        XCTAssertThrowsError(try Command.parse("no servers")) { error in
            XCTAssertEqual("\(error)", "'no' takes one of: roundrobin, hash, weight, prio, stubborn, maglev, tcp_nodelay, http, "
                           + "accept_proxy, control_tcp_files, freebind, log, web_stats, acl N, bgp, healthcheck, metrics, sync, vrrp vrid N")
        }
    }

    func testEverySettingReachesItsFieldIsAnsweredAndWritten() throws {
        for setting in Command.Setting.allCases {
            var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [])
            let value = setting.range.upperBound
            try configuration.apply(.setting(setting, value))
            XCTAssertEqual(configuration[keyPath: setting.field], value, setting.rawValue)
            XCTAssertTrue(configuration.commands.contains(.setting(setting, value)), "write leaves out \(setting.rawValue)")
            var runtime = Runtime(configuration: configuration, state: try configuration.makeState())
            let facts = Runtime.Facts(now: at(1), started: at(0), vrrp: [], listen: "127.0.0.1:80", control: nil,
                                      pid: 1, exitEnabled: false, configFile: nil)
            let answer = try runtime.execute([ConfigLine(try Command.parse(setting.rawValue))], facts: facts, resolved: [:])
            XCTAssertEqual(answer.lines, ["\(value)"], setting.rawValue)
        }
    }

    func testEveryFlagAndFileReachesItsFieldAndIsWritten() throws {
        var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [])
        for flag in Command.Flag.allCases {
            try configuration.apply(try Command.parse(flag.rawValue))
            XCTAssertTrue(configuration[keyPath: flag.field], flag.rawValue)
            XCTAssertTrue(configuration.commands.contains(.flag(flag, true)), "write leaves out \(flag.rawValue)")
        }
        for file in Command.FileSetting.allCases {
            try configuration.apply(try Command.parse("\(file.rawValue) /tmp/\(file.rawValue)"))
            XCTAssertEqual(configuration[keyPath: file.field], "/tmp/\(file.rawValue)")
            XCTAssertTrue(configuration.commands.contains(.file(file, .set("/tmp/\(file.rawValue)"))), file.rawValue)
        }
    }

    /// Every keyword was looked at: these are the ones whose lines have penha write, read or
    /// run a file they name (or allow those), refused on a TCP control port.
    func testTheKeywordsThatNameAFileAreMarked() {
        let marked = CommandKeyword.table.filter {
            if case .none = $0.fileUse { return false }
            return true
        }.map(\.name)
        XCTAssertEqual(Set(marked), ["control_tcp_files", "log", "web_stats", "include", "ssl_sni_path", "sync", "vrrp", "write"])
    }

    func testATCPControlPortRefusesTheLinesThatNameAFileAndOnlyThose() throws {
        let refused = ["log /etc/cron.hourly/x.sh", "log 192.0.2.1:514", "web_stats /root/.profile", "include /etc/shadow",
                       "write", "write /etc/sudoers.d/x", "ssl_sni_path /etc/ssl/private",
                       "sync listen 127.0.0.1:7000 peer 127.0.0.2:7000 key /etc/shadow",
                       "vrrp interface lo vrid 7 priority 100 vip 192.0.2.9/24 notify /tmp/x.sh", "control_tcp_files"]
        for line in refused {
            XCTAssertNoThrow(try Command.parse(line), "elsewhere '\(line)' is taken")
            XCTAssertThrowsError(try Command.parse(line, allowingFiles: false), line) { error in
                XCTAssertTrue("\(error)".contains("refused on a TCP control port"), "\(line): \(error)")
            }
        }
        let allowed = ["log", "no log", "web_stats", "no web_stats", "no sync", "no control_tcp_files", "pid", "status",
                       "vrrp interface lo vrid 7 priority 100 vip 192.0.2.9/24", "no vrrp vrid 7", "server 0 address 10.0.0.1",
                       "listen", "metrics 127.0.0.1:9100", "healthcheck http /health", "timeout 5", "acl 1 deny 10.0.0.1"]
        for line in allowed {
            XCTAssertEqual(try Command.parse(line, allowingFiles: false), try Command.parse(line), line)
        }
        XCTAssertThrowsError(try Command.parse("log /tmp/x", allowingFiles: false)) { error in
            XCTAssertEqual("\(error)", "'log' names a file, refused on a TCP control port (anyone who reaches it may send "
                           + "commands): use the Unix control socket, or give control_tcp_files in -F or -O")
        }
    }
}
