// ProxyHeader.parse on any bytes: it never reads past `longest`, a header's length lies
// within the input, every prefix of a whole header is incomplete, and a header that names
// a client reads back from what encode makes of it.
import BalancerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProxyHeader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let parsed = ProxyHeader.parse(input)
    precondition(parsed == ProxyHeader.parse(input.prefix(ProxyHeader.longest)), "it read past \(ProxyHeader.longest) bytes")
    guard case .header(let length, let source, let destination) = parsed else { return 0 }
    precondition(length > 0 && length <= input.count && length <= ProxyHeader.longest, "length \(length) of \(input.count)")
    precondition(ProxyHeader.parse(input.prefix(length)) == parsed, "the bytes after the header changed it")
    for cut in [0, length / 2, length - 1] {
        precondition(ProxyHeader.parse(input.prefix(cut)) == .incomplete, "a prefix of \(cut) bytes was not incomplete")
    }
    if let source, let destination, source.address.family == destination.address.family {
        for version in [ProxyProtocol.v1, .v2] {
            let header = ProxyHeader.encode(version, source: source, destination: destination)
            precondition(ProxyHeader.parse(header) == .header(length: header.count, source: source, destination: destination),
                         "\(version) does not read back \(source) \(destination)")
        }
    }
    return 0
}
