// ConfigFile.parse on any text. `include` would read files, so every line that contains
// the word is dropped before parsing: no input can name a file to read.
import Balancer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let decoded = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let text = decoded.split(separator: "\n", omittingEmptySubsequences: false)
        .filter { !$0.utf8.contains(subsequence: "include".utf8) }
        .joined(separator: "\n")
    guard !text.utf8.contains(subsequence: "include".utf8) else { return 0 }
    guard let lines = try? ConfigFile.parse(text, name: "fuzz.conf") else { return 0 }
    // What `write` would save: the commands one per line, which read back to the same commands.
    let written = lines.map(\.command.text).joined(separator: "\n")
    let again = try? ConfigFile.parse(written, name: "written.conf")
    precondition(again?.map(\.command) == lines.map(\.command), "\(text) does not read back from \(written)")
    return 0
}

extension Collection where Element: Equatable {
    func contains(subsequence: some Collection<Element>) -> Bool {
        indices.contains { self[$0...].starts(with: subsequence) }
    }
}
