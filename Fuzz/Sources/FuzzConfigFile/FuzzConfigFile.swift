// ConfigFile.parse on any text. Its reader (what `include` reads) refuses every file, so no
// input can make it read one; an include parses and then fails, as a missing file would.
import BalancerCore

struct NoFiles: Error {}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let lines = try? ConfigFile.parse(text, name: "fuzz.conf", reading: { _ in throw NoFiles() }) else { return 0 }
    // What `write` would save: the commands one per line, which read back to the same commands.
    let written = lines.map(\.command.text).joined(separator: "\n")
    let again = try? ConfigFile.parse(written, name: "written.conf", reading: { _ in throw NoFiles() })
    precondition(again?.map(\.command) == lines.map(\.command), "\(text) does not read back from \(written)")
    return 0
}
