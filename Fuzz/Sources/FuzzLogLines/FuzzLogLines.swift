// The log tools' readers (mergelogs, logd) on any bytes. BoundedLines splits a stream the
// same way however it is cut; a line PenLogLine or AccessLogLine takes writes back to
// itself; and LogMerge, over logs cut from the input with an offset and a jitter from its
// first bytes (their extremes among them), ends with one line per web-server line.
import BalancerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLogLines(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = Array(UnsafeBufferPointer(start: data, count: size))[...]
    // Byte 0: the line limit and the read size; bytes 1 and 2: the offset and the jitter.
    guard input.count >= 3, let control = input.popFirst(), let offsetByte = input.popFirst(),
          let jitterByte = input.popFirst() else { return 0 }
    let limit = [PenLogLine.maxLineBytes, 16, 100, 1][Int(control & 0x3)]
    let readSize = Int(control >> 2) + 1
    let stream = Array(input)

    let lines = splitLines(stream, limit: limit, readSize: stream.count + 1)
    precondition(splitLines(stream, limit: limit, readSize: readSize) == lines, "\(stream) split differently in reads of \(readSize)")
    for case .line(let line) in lines {
        precondition(line.count <= limit && !line.contains(UInt8(ascii: "\n")), "\(line) from \(stream)")
        checkRoundTrips(line)
    }

    // Logs cut at NUL bytes: the pen log, then the logs of web servers "a" and "b".
    let logs = stream.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false).map {
        splitLines(Array($0), limit: PenLogLine.maxLineBytes, readSize: $0.count + 1)
    }
    let offsets = [0, 1, -1, LogMerge.offsetRange.lowerBound, LogMerge.offsetRange.upperBound]
    let jitters = [LogMerge.defaultJitter, 0, 1, LogMerge.jitterRange.upperBound]
    let offset = offsets.indices.contains(Int(offsetByte)) ? offsets[Int(offsetByte)] : (Int(offsetByte) - 128) * 675
    let jitter = jitters.indices.contains(Int(jitterByte)) ? jitters[Int(jitterByte)] : Int(jitterByte) * 300
    let serverLogs = Array(logs.dropFirst()) + Array(repeating: [], count: 3 - logs.count)
    var merge = LogMerge(servers: ["a", "b"], serverLogs: serverLogs.map(source), penLog: source(logs[0]),
                         jitter: jitter, offset: offset)
    var merged = 0
    while let line = merge.next() {
        precondition(line.last == UInt8(ascii: "\n") && line.filter { $0 == UInt8(ascii: "\n") }.count == 1, "\(line)")
        merged += 1
    }
    let serverLines = serverLogs.joined().filter { next in
        guard case .line(let line) = next else { return false }
        return AccessLogLine(line) != nil
    }
    precondition(merged == serverLines.count, "\(merged) lines merged from \(serverLines.count)")
    let counts = merge.counts
    precondition(counts.matched + counts.unmatched == merged)
    precondition(counts.skippedServerLines == serverLogs.joined().count - serverLines.count)
    return 0
}

/// The lines of `stream` fed to a BoundedLines in reads of `readSize` bytes.
private func splitLines(_ stream: [UInt8], limit: Int, readSize: Int) -> [BoundedLines.Line] {
    var splitter = BoundedLines(limit: limit)
    var lines: [BoundedLines.Line] = []
    var offset = 0
    while offset < stream.count {
        let end = min(stream.count, offset + readSize)
        lines += splitter.feed(stream[offset..<end])
        offset = end
    }
    return lines + (splitter.finish().map { [$0] } ?? [])
}

/// A source handing out `lines` in order, as LogMerge reads a file.
private func source(_ lines: [BoundedLines.Line]) -> LogMerge.Source {
    var remaining = lines[...]
    return { remaining.popFirst() }
}

private func checkRoundTrips(_ line: [UInt8]) {
    if let penLine = PenLogLine(fileLine: line) {
        precondition(PenLogLine(fileLine: penLine.fileLine) == penLine, "\(line) does not read back from \(penLine.fileLine)")
    }
    if let datagram = PenLogLine(datagram: line) {
        precondition(PenLogLine(datagram: datagram.datagram) == datagram, "\(line) does not read back from \(datagram.datagram)")
    }
    guard let access = AccessLogLine(line) else { return }
    // As read (without the LF BoundedLines took, and without a CR before it), but for the bytes
    // outside printable ASCII after the client, which are written escaped (LogText: a datagram
    // from anyone reaches logd's log); escaping is idempotent, so the written line writes back
    // as itself.
    let body = line.last == UInt8(ascii: "\r") ? Array(line.dropLast()) : line
    let written = access.line(client: access.client)
    if body.allSatisfy({ (0x20...0x7E).contains($0) }) {
        precondition(written == body + [UInt8(ascii: "\n")], "\(line) is not written back as it was")
    }
    let again = AccessLogLine(Array(written.dropLast()))
    precondition(again?.line(client: access.client) == written, "\(line) is written as \(written), which does not write back as itself")
    // Written in UTC, a time reads back the same, unless UTC takes it outside the years
    // 1970-9999 that the format is read in (up to 1970-01-01 00:00:00 +0100, say).
    let merged = access.mergedLine(client: access.client)
    let readBack = AccessLogLine(merged)
    let utcYears = 0...253_402_300_799  // to 9999-12-31 23:59:59 UTC
    precondition(readBack?.time == access.time || readBack == nil && !utcYears.contains(access.time),
                 "\(line) is merged as \(merged), which does not read back to the same time")
}
