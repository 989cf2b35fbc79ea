import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// penha on node a and keepalived (Debian's package) on node b sharing one virtual router:
/// same VRID, same version, same interval. Root only, like every NetworkLab test.
///
/// keepalived only moves the VIP, so node b also runs a VRRP-less penha on 0.0.0.0:80 in front
/// of its backend: whichever node holds 192.0.2.10 answers the client with its own name.
final class KeepalivedIntegrationTests: XCTestCase {
    static let vip = "192.0.2.10"
    /// advert 1 s: Master_Down_Interval is 3 s + skew, at most 3.61 s for priority 100
    /// (RFC 5798 section 6.1); this is comfortably past it.
    static let pastMasterDown = 5.0
    /// A master that resigns (priority 0) is replaced after the skew time, under 1 s.
    static let resignTakeover = 3.0
    /// An election from scratch or a preemption: Master_Down_Interval plus margin.
    static let election = 8.0

    /// penha on node a holding the VIP with VRRP; listens on the VIP with IP_FREEBIND.
    private func startPenha(_ lab: NetworkLab, priority: Int, version: Int, auth: String? = nil) throws -> Penha {
        let vrrp = "vrrp interface eth0 vrid 51 priority \(priority) vip \(Self.vip)/24 advert 1s version \(version)"
            + (auth.map { " auth \($0)" } ?? "")
        return try Penha(["-O", vrrp], listen: "\(Self.vip):80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("a"))
    }

    /// The service on node b: no VRRP, on every address, so it answers once keepalived adds the VIP.
    private func startServiceOnB(_ lab: NetworkLab) throws -> Penha {
        try Penha([], listen: "0.0.0.0:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("b"))
    }

    private func startKeepalived(_ lab: NetworkLab, priority: Int, version: Int, auth: String? = nil) throws -> Keepalived {
        try Keepalived(namespace: lab.namespace("b"), priority: priority, version: version, password: auth)
    }

    /// Waits (bounded) until penha's log shows `-> STATE` at least `count` times.
    private func waitForState(_ penha: Penha, _ state: String, count: Int = 1, timeout: Double) -> Bool {
        waitFor(timeout: timeout) { occurrences(of: "-> \(state)", in: penha.stderr) >= count }
    }

    /// Waits (bounded) until the VIP is (or is not) on node `node`'s eth0.
    private func waitForVIP(on node: String, _ present: Bool, lab: NetworkLab, timeout: Double) throws -> Bool {
        let deadline = Date() + timeout
        repeat {
            if try lab.addresses(on: node).contains("\(Self.vip)/24") == present { return true }
            usleep(50_000)
        } while Date() < deadline
        return false
    }

    /// `penha status --json`'s first VRRP instance, for assertions and failure messages.
    private func vrrpStatus(of penha: Penha) -> [String: Any] {
        guard let result = try? runPenha(["status", "-C", penha.control, "--json"]), result.status == 0,
              let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        else { return [:] }
        return (object["vrrp"] as? [[String: Any]])?.first ?? [:]
    }

    private func diagnostics(_ penha: Penha?, _ keepalived: Keepalived?) -> String {
        var text = ""
        if let penha {
            let status = vrrpStatus(of: penha)
            text += "\n--- penha stderr:\n\(penha.stderr)\n--- penha received \(status["received"] ?? "?")"
                + " dropped \(status["dropped"] ?? "?") master \(status["master"] ?? "?")"
        }
        if let keepalived { text += "\n--- keepalived log:\n\(keepalived.log)" }
        return text
    }

    /// v3: penha 200 wins over keepalived 100; keepalived takes over when penha stops and
    /// yields again when penha comes back.
    func testVersion3PenhaMasterKeepalivedBackupFailoverAndPreemption() throws {
        let lab = try NetworkLab()
        let service = try startServiceOnB(lab)
        defer { service.stop() }
        // penha first, its timer running: its Master_Down_Interval (3.22 s) is shorter than
        // keepalived's (3.61 s) and starts earlier, so keepalived hears a master before its own
        // timer runs out.
        var penha = try startPenha(lab, priority: 200, version: 3)
        XCTAssertTrue(waitForState(penha, "BACKUP", timeout: 3), penha.stderr)
        let keepalived = try startKeepalived(lab, priority: 100, version: 3)
        defer { keepalived.kill() }

        XCTAssertTrue(waitForState(penha, "MASTER", timeout: Self.election), diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-a", timeout: 5), diagnostics(penha, keepalived))
        // Past keepalived's Master_Down_Interval: had it not accepted penha's adverts, it would be master now.
        keepalived.waitUntilRunning(for: Self.pastMasterDown)
        XCTAssertFalse(keepalived.log.contains("Entering MASTER STATE"), "keepalived accepts penha's adverts" + diagnostics(penha, keepalived))
        XCTAssertTrue(keepalived.log.contains("Entering BACKUP STATE"), diagnostics(penha, keepalived))
        XCTAssertFalse(try lab.addresses(on: "b").contains("\(Self.vip)/24"), "only the master holds the VIP")
        XCTAssertEqual(occurrences(of: "-> MASTER", in: penha.stderr), 1, "no flapping" + diagnostics(penha, keepalived))

        // penha resigns (priority 0): keepalived takes over after its skew time.
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertEqual(penha.waitForExit(timeout: 5), 0, penha.stderr)
        XCTAssertTrue(keepalived.waitForLog("Entering MASTER STATE", timeout: Self.resignTakeover), diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-b", timeout: 5), diagnostics(penha, keepalived))
        XCTAssertFalse(try lab.addresses(on: "a").contains("\(Self.vip)/24"), "penha left no VIP behind")

        // penha comes back with the higher priority and preempts: it hears keepalived's
        // lower-priority adverts, ignores them, and its Master_Down timer expires.
        penha = try startPenha(lab, priority: 200, version: 3)
        XCTAssertTrue(waitForState(penha, "MASTER", timeout: Self.election), diagnostics(penha, keepalived))
        XCTAssertTrue(keepalived.waitForLog("Entering BACKUP STATE", count: 2, timeout: 3), "keepalived yields" + diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-a", timeout: 5), diagnostics(penha, keepalived))
        XCTAssertTrue(try waitForVIP(on: "b", false, lab: lab, timeout: 3), "keepalived removed the VIP" + diagnostics(penha, keepalived))
        XCTAssertGreaterThan(vrrpStatus(of: penha)["received"] as? Int ?? 0, 0, "penha heard keepalived's adverts" + diagnostics(penha, keepalived))
        penha.stop()
        XCTAssertTrue(keepalived.terminate(), keepalived.log)
    }

    /// v3 the other way: keepalived 200 wins over penha 100; penha takes over when keepalived
    /// stops and yields again when keepalived comes back.
    func testVersion3KeepalivedMasterPenhaBackupFailoverAndPreemption() throws {
        let lab = try NetworkLab()
        let service = try startServiceOnB(lab)
        defer { service.stop() }
        // keepalived first: its Master_Down_Interval (3.22 s) is the shorter one.
        var keepalived = try startKeepalived(lab, priority: 200, version: 3)
        defer { keepalived.kill() }
        let penha = try startPenha(lab, priority: 100, version: 3)
        defer { penha.stop() }

        XCTAssertTrue(keepalived.waitForLog("Entering MASTER STATE", timeout: Self.election), diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-b", timeout: 5), diagnostics(penha, keepalived))
        XCTAssertTrue(waitForState(penha, "BACKUP", timeout: 3), diagnostics(penha, keepalived))
        // Past penha's Master_Down_Interval: had it dropped keepalived's adverts, it would be master now.
        XCTAssertFalse(waitForState(penha, "MASTER", timeout: Self.pastMasterDown), "penha accepts keepalived's adverts" + diagnostics(penha, keepalived))
        let status = vrrpStatus(of: penha)
        XCTAssertGreaterThan(status["received"] as? Int ?? 0, 0, diagnostics(penha, keepalived))
        XCTAssertEqual(status["master"] as? String, "192.0.2.2", "penha knows keepalived is master" + diagnostics(penha, keepalived))
        XCTAssertFalse(try lab.addresses(on: "a").contains("\(Self.vip)/24"), "only the master holds the VIP")

        // keepalived resigns (priority 0 on SIGTERM): penha takes over after its skew time.
        XCTAssertTrue(keepalived.terminate(), keepalived.log)
        XCTAssertTrue(waitForState(penha, "MASTER", timeout: Self.resignTakeover), diagnostics(penha, keepalived))
        XCTAssertTrue(penha.stderr.contains("priority 0 from 192.0.2.2"), "took over on keepalived's resignation" + diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-a", timeout: 5), diagnostics(penha, keepalived))
        XCTAssertFalse(try lab.addresses(on: "b").contains("\(Self.vip)/24"), "keepalived left no VIP behind")

        // keepalived comes back with the higher priority and preempts.
        keepalived = try startKeepalived(lab, priority: 200, version: 3)
        XCTAssertTrue(keepalived.waitForLog("Entering MASTER STATE", timeout: Self.election), diagnostics(penha, keepalived))
        XCTAssertTrue(waitForState(penha, "BACKUP", count: 2, timeout: 3), "penha yields" + diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-b", timeout: 5), diagnostics(penha, keepalived))
        XCTAssertTrue(try waitForVIP(on: "a", false, lab: lab, timeout: 3), "penha removed the VIP" + diagnostics(penha, keepalived))
        XCTAssertTrue(keepalived.terminate(), keepalived.log)
    }

    /// v2 with simple-text authentication: penha 200 wins over keepalived 100, and keepalived
    /// takes over when penha stops.
    func testVersion2WithAuthenticationElectionAndFailover() throws {
        let lab = try NetworkLab()
        let service = try startServiceOnB(lab)
        defer { service.stop() }
        let penha = try startPenha(lab, priority: 200, version: 2, auth: "secret")
        defer { penha.stop() }
        XCTAssertTrue(waitForState(penha, "BACKUP", timeout: 3), penha.stderr)
        let keepalived = try startKeepalived(lab, priority: 100, version: 2, auth: "secret")
        defer { keepalived.kill() }

        XCTAssertTrue(waitForState(penha, "MASTER", timeout: Self.election), diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-a", timeout: 5), diagnostics(penha, keepalived))
        keepalived.waitUntilRunning(for: Self.pastMasterDown)
        XCTAssertFalse(keepalived.log.contains("Entering MASTER STATE"), "keepalived accepts penha's v2 adverts" + diagnostics(penha, keepalived))
        XCTAssertFalse(try lab.addresses(on: "b").contains("\(Self.vip)/24"), "only the master holds the VIP")

        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertEqual(penha.waitForExit(timeout: 5), 0, penha.stderr)
        XCTAssertTrue(keepalived.waitForLog("Entering MASTER STATE", timeout: Self.resignTakeover), diagnostics(penha, keepalived))
        XCTAssertNotNil(try lab.waitUntil(Self.vip, answers: "node-b", timeout: 5), diagnostics(penha, keepalived))
        XCTAssertTrue(keepalived.terminate(), keepalived.log)
    }
}

/// How often `needle` occurs in `text`.
private func occurrences(of needle: String, in text: String) -> Int {
    text.components(separatedBy: needle).count - 1
}

/// One keepalived (VRRP subsystem only) in a network namespace, with its configuration, pid
/// files and console log in a temporary directory of its own, removed when it is stopped.
/// Killed with SIGKILL (parent and VRRP child) unless it was terminated cleanly. Needs root,
/// which the NetworkLab built first has already checked (skipping or failing as it does).
final class Keepalived {
    let process = Process()
    let directory: URL
    private let started = Date()
    private var vrrpChild: pid_t = 0
    private var finalLog: String?

    init(namespace: String, priority: Int, version: Int, password: String?) throws {
        let candidates: [String] = ["/usr/sbin/keepalived", "/sbin/keepalived"]
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestFailure("keepalived is not installed (apt-get install keepalived)")
        }
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("penha-keepalived-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let authentication = password.map {
            "\n    authentication {\n        auth_type PASS\n        auth_pass \($0)\n    }"
        } ?? ""
        let configuration = """
            global_defs {
                router_id penha-test
                vrrp_version \(version)
            }
            vrrp_instance VI_1 {
                state BACKUP
                interface eth0
                virtual_router_id 51
                priority \(priority)
                advert_int 1\(authentication)
                virtual_ipaddress {
                    192.0.2.10/24
                }
            }

            """
        let configurationPath = directory.appendingPathComponent("keepalived.conf").path
        try configuration.write(toFile: configurationPath, atomically: true, encoding: .utf8)
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw TestFailure("cannot create \(logPath)")
        }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? output.close() }
        // `ip netns exec` execs keepalived in place, so the process id is keepalived's parent.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "ip", "netns", "exec", namespace, binary, "--dont-fork", "--log-console", "--no-syslog", "--log-detail",
            "--vrrp", "--use-file", configurationPath, "--pid", directory.appendingPathComponent("keepalived.pid").path,
            "--vrrp_pid", vrrpPidPath,
        ]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        // Started: the VRRP child has written its pid file and its instance has entered a state.
        let ready = waitFor(timeout: 10) {
            if vrrpChild == 0, let text = try? String(contentsOfFile: vrrpPidPath, encoding: .utf8),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                vrrpChild = pid
            }
            return vrrpChild != 0 && log.contains("Entering") || !process.isRunning
        }
        guard ready, process.isRunning else {
            let text = log
            kill()
            throw TestFailure("keepalived did not start; its log:\n\(text)")
        }
    }

    private var logPath: String { directory.appendingPathComponent("console.log").path }
    private var vrrpPidPath: String { directory.appendingPathComponent("keepalived_vrrp.pid").path }

    /// The console log so far (kept after the directory is gone).
    var log: String {
        finalLog ?? (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Waits (bounded) until the log holds `text` at least `count` times.
    func waitForLog(_ text: String, count: Int = 1, timeout: Double) -> Bool {
        waitFor(timeout: timeout) { occurrences(of: text, in: log) >= count }
    }

    /// Sleeps until keepalived has been running `seconds` (bounded by that).
    func waitUntilRunning(for seconds: Double) {
        let left = seconds - Date().timeIntervalSince(started)
        if left > 0 { usleep(useconds_t(left * 1_000_000)) }
    }

    /// SIGTERM and a bounded wait for the parent and the VRRP child to exit; SIGKILL if they
    /// do not. True when it exited cleanly with status 0.
    @discardableResult
    func terminate(timeout: Double = 10) -> Bool {
        guard finalLog == nil else { return false }
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGTERM) }
        let exited = waitFor(timeout: timeout) { !process.isRunning && !childAlive }
        let clean = exited && process.terminationStatus == 0
        kill()
        return clean
    }

    /// SIGKILL to whatever is left, then remove the directory. Idempotent.
    func kill() {
        guard finalLog == nil else { return }
        if childAlive { Glibc.kill(vrrpChild, SIGKILL) }
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        _ = waitFor(timeout: 5) { !process.isRunning && !childAlive }
        finalLog = log
        try? FileManager.default.removeItem(at: directory)
    }

    /// The VRRP child runs as long as its pid is a keepalived that is not a zombie.
    private var childAlive: Bool {
        guard vrrpChild > 0,
              let stat = try? String(contentsOfFile: "/proc/\(vrrpChild)/stat", encoding: .utf8),
              stat.contains("(keepalived)") else { return false }
        // The state follows the parenthesised command name.
        let state = stat.split(separator: ")").last?.split(separator: " ").first
        return state != "Z" && state != "X"
    }

    deinit { kill() }
}
