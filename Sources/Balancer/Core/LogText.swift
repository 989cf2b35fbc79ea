/// Text on its way into a log line, made harmless there: every byte that is not printable
/// ASCII is escaped, so nothing a sender chose (a request, a host name, a command word, a
/// peer's message) can put a control sequence into a terminal that shows the log, end the
/// line and forge another, or carry a NUL into a reader. The form is Apache's for its
/// access log (`ap_escape_logitem`): `\b`, `\t`, `\n`, `\v`, `\r`, else `\xNN` in
/// lowercase, so that pen's log keeps matching the web servers' lines (`PenLogLine`).
/// Unlike Apache, `\` and `"` are left alone: penha's fields are not quoted, and escaping
/// only bytes outside printable ASCII makes the rule idempotent, so a web server's
/// already-escaped line passes penha's log tools unchanged. Pure.
public enum LogText {
    /// `bytes`, escaped.
    public static func escaped(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var escaped: [UInt8] = []
        escaped.reserveCapacity(bytes.underestimatedCount)
        for byte in bytes { append(byte, to: &escaped) }
        return escaped
    }

    /// The UTF-8 of `text`, escaped (a character beyond ASCII is escaped byte by byte).
    public static func escaped(_ text: String) -> String {
        // The common case, nothing to escape, costs one scan and no copy.
        guard text.utf8.contains(where: needsEscape) else { return text }
        return String(decoding: escaped(text.utf8), as: UTF8.self)
    }

    /// Appends `byte` to `output` as the log writes it: itself, or its escape.
    static func append(_ byte: UInt8, to output: inout [UInt8]) {
        guard needsEscape(byte) else {
            output.append(byte)
            return
        }
        output.append(UInt8(ascii: "\\"))
        switch byte {
        case 0x08: output.append(UInt8(ascii: "b"))
        case 0x09: output.append(UInt8(ascii: "t"))
        case 0x0A: output.append(UInt8(ascii: "n"))
        case 0x0B: output.append(UInt8(ascii: "v"))
        case 0x0D: output.append(UInt8(ascii: "r"))
        default: output += [UInt8(ascii: "x"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0F)]]
        }
    }

    private static func needsEscape(_ byte: UInt8) -> Bool { !(0x20...0x7E).contains(byte) }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}
