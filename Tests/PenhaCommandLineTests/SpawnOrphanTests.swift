import CProcess
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `penha_spawn_orphan`, which starts the successor of an upgrade: the descriptor it tells its
/// starter on must reach the new process whatever number it has in the starter.
final class SpawnOrphanTests: XCTestCase {
    /// A starter run with stdin and stdout closed (`penha upgrade <&- >&-`) gets descriptors 0
    /// and 1 for its readiness pipe: putting /dev/null on 0 and 1 must not replace the pipe
    /// before it is moved to its target, or the successor's "took over" goes to /dev/null and
    /// the starter stops it as failed.
    func testTheReadyDescriptorArrivesWhenItIsStdinOrStdoutInTheStarter() throws {
        for source: Int32 in [0, 1] {
            var ready: [Int32] = [-1, -1]
            XCTAssertEqual(pipe(&ready), 0)
            let saved = dup(source)
            XCTAssertGreaterThanOrEqual(saved, 0)
            XCTAssertEqual(dup2(ready[1], source), source)
            close(ready[1])
            let arguments = ["/bin/sh", "-c", "printf took >&4"]
            var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
            var envp: [UnsafeMutablePointer<CChar>?] = [nil]
            let child = penha_spawn_orphan("/bin/sh", &argv, &envp, source, 4)
            for pointer in argv { free(pointer) }
            // The starter's own descriptor back, and its copy of the write end gone.
            dup2(saved, source)
            close(saved)
            XCTAssertGreaterThan(child, 0)
            var bytes = [UInt8](repeating: 0, count: 16)
            var waiting = pollfd(fd: ready[0], events: Int16(POLLIN), revents: 0)
            // Bounded: the shell writes at once, or exits and closes the pipe.
            XCTAssertEqual(poll(&waiting, 1, 10_000), 1)
            let count = read(ready[0], &bytes, bytes.count)
            close(ready[0])
            XCTAssertEqual(String(decoding: bytes.prefix(max(0, count)), as: UTF8.self), "took", "the ready descriptor was \(source) in the starter")
        }
    }
}
