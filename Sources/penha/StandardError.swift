import Balancer
import Logging

/// One line to stderr (descriptor 2), written at once as unbuffered stdio would: Glibc's
/// `stderr` is a mutable global, which Swift 6 does not let any thread read.
func writeToStandardError(_ line: String) {
    _ = FileAccess.writeAll(Array("\(line)\n".utf8), to: 2)
}

/// A line for the operator with its priority: under systemd's journal it starts with `<N>`
/// (sd-daemon(3)), so that `journalctl -p err` and `systemctl status` find an error; without
/// the prefix the journal files it as info.
func writeToStandardError(_ line: String, level: Logger.Level) {
    let journal = SystemLogHandler.stderrIsJournal(Environment.dictionary)
    writeToStandardError(journal ? "<\(SystemLogHandler.severity(level))>\(line)" : line)
}
