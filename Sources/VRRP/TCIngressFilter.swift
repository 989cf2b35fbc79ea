import CBPF
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// One of penha's eBPF filters at tc ingress: on one interface, at one preference, handle 1,
/// direct action, loaded through libbpf. `tc filter show dev IF ingress` shows it, `tc filter
/// del dev IF ingress pref N` undoes it. Used by the VRRP second chance (`SecondChanceTraffic`)
/// and by the one among ECMP nodes (`ECMPSecondChanceTraffic`).
struct TCIngressFilter: Equatable {
    let interfaceIndex: Int32
    let priority: UInt32

    /// Loads `program` and puts it in place of whatever filter is there.
    func attach(_ program: SecondChanceProgram) throws {
        let descriptor = try Self.load(program)
        defer { close(descriptor) }
        let result = penha_tc_attach_ingress(interfaceIndex, priority, descriptor)
        guard result == 0 else { throw VRRPSystemError("attaching \(program.name) at tc ingress", errno: -result) }
    }

    /// Removes the filter; one that is not there is no error.
    func detach() throws {
        let result = penha_tc_detach_ingress(interfaceIndex, priority)
        guard result == 0 else { throw VRRPSystemError("removing the tc filter", errno: -result) }
    }

    /// Loads a program and returns its descriptor; the kernel's refusal comes with the
    /// verifier's last words. Also what `penha check` asks: whether this kernel can.
    static func load(_ program: SecondChanceProgram) throws -> Int32 {
        let bytes = program.bytes
        let count = program.instructions.count
        let descriptor = bytes.withUnsafeBytes { penha_bpf_load_classifier($0.baseAddress, count, program.name, nil, 0) }
        guard descriptor < 0 else { return descriptor }
        var log = [CChar](repeating: 0, count: 65536)
        _ = bytes.withUnsafeBytes { penha_bpf_load_classifier($0.baseAddress, count, program.name, &log, UInt32(log.count)) }
        let reason = String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .split(separator: "\n").suffix(2).joined(separator: "; ")
        throw VRRPSystemError("loading the eBPF program \(program.name): \(String(cString: strerror(-descriptor)))"
                              + (reason.isEmpty ? "" : " (\(reason))"))
    }
}
