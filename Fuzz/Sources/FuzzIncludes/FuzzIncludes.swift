// ConfigFile's include expansion over files in memory: the input cut at NUL bytes is the
// main file, then files "a", "b", "c" ... that `include` can name (any other name is
// missing). However the files include each other, a load reads each file once, stays within
// its budget and its error bound, and `parse` stops at the first error `parseAll` reports.
import BalancerCore
import TestSupport

/// Small enough that an input spending it (copies that multiply) stays quick under ASan:
/// the standard budget's 100,000 lines take seconds there.
private let budget = ConfigFile.Budget(lines: 2000, bytes: 1 << 16, errors: 20)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIncludes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let parts = UnsafeBufferPointer(start: data, count: size).split(separator: 0, maxSplits: 8, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    var texts: [String: String] = [:]
    for (index, text) in parts.dropFirst().enumerated() { texts[String(UnicodeScalar(UInt8(ascii: "a") + UInt8(index)))] = text }

    let collected = InMemoryFiles(texts)
    let (lines, errors) = ConfigFile.parseAll(parts[0], name: "main", reading: collected.read, budget: budget)
    precondition(errors.count <= budget.errors + 1, "\(errors.count) errors")
    precondition(lines.count <= budget.lines, "\(lines.count) lines")
    for (path, count) in collected.reads where texts[path] != nil {
        precondition(count == 1, "\(path) read \(count) times")
    }

    let stopping = InMemoryFiles(texts)
    do {
        let parsed = try ConfigFile.parse(parts[0], name: "main", reading: stopping.read, budget: budget)
        precondition(errors.isEmpty && parsed == lines, "parse took what parseAll refused: \(errors.first.map { "\($0)" } ?? "")")
    } catch {
        precondition("\(error)" == errors.first.map { "\($0)" }, "parse stopped at '\(error)', parseAll at \(errors.first.map { "'\($0)'" } ?? "none")")
    }
    // Lines from elsewhere (-O, the control socket) expand under the same bounds.
    _ = try? ConfigFile.expandIncludes([ConfigLine(.include("a"), origin: "-O")], reading: InMemoryFiles(texts).read, budget: budget)
    return 0
}
