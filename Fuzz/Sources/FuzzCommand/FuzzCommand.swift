import BalancerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCommand(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let line = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let command = try? Command.parse(line) else { return 0 }
    let again = try? Command.parse(command.text)
    precondition(again == command, "'\(line)' parses to \(command), whose text '\(command.text)' parses to \(String(describing: again))")
    return 0
}
