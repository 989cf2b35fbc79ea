import BalancerCore

/// Files in memory for `ConfigFile`'s `reading:`, counting how often each was read (a load
/// reads each once); a name not there is missing as on a disk.
public final class InMemoryFiles {
    public let texts: [String: String]
    public private(set) var reads: [String: Int] = [:]

    public init(_ texts: [String: String]) {
        self.texts = texts
    }

    public func read(_ path: String) throws -> String {
        reads[path, default: 0] += 1
        guard let text = texts[path] else { throw ConfigurationError("cannot read \(path): no such file or directory") }
        return text
    }
}
