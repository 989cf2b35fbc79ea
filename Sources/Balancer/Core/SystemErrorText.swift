import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// System errors as people read them, `address already in use`: the lowercased strerror
/// text, without NIO's function names (`bind(descriptor:ptr:bytes:)`) or errno numbers.
/// The one place that renders them; whatever reaches a message goes through here.
public enum SystemErrorText {
    public static func describe(errno code: Int32) -> String {
        String(cString: strerror(code)).lowercased()
    }

    /// NIO's system call failures by their errno, its socket address errors in words; any
    /// other error (penha's own, which already read well) as it describes itself.
    public static func describe(_ error: Error) -> String {
        switch error {
        case let error as IOError: return describe(errno: error.errnoCode)
        case SocketAddressError.unixDomainSocketPathTooLong: return "the path is too long for a Unix socket"
        default: return "\(error)"
        }
    }
}
