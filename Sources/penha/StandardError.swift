import Balancer

/// One line to stderr (descriptor 2), written at once as unbuffered stdio would: Glibc's
/// `stderr` is a mutable global, which Swift 6 does not let any thread read.
func writeToStandardError(_ line: String) {
    _ = FileAccess.writeAll(Array("\(line)\n".utf8), to: 2)
}
