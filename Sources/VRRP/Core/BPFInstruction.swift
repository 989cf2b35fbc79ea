/// One eBPF instruction (`struct bpf_insn`, Documentation/bpf/standard/instruction-set.rst),
/// only the kinds the second chance's programs use.
public struct BPFInstruction: Equatable, Sendable {
    public enum Register: UInt8, Sendable { case r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10 }

    public enum Size: UInt8, Sendable {
        case word = 0x00, half = 0x08, byte = 0x10
    }

    /// Kernel helpers by number (include/uapi/linux/bpf.h's `__BPF_FUNC_MAPPER`).
    public enum Helper: Int32, Sendable {
        case l3ChecksumReplace = 10
        case cloneRedirect = 13
        case redirect = 23
        case skRelease = 86
        case skcLookupTCP = 99
        case tcpCheckSYNCookie = 100
    }

    /// Compares with an immediate: 32 bits (JMP32) so that a value with the top bit set is
    /// not sign-extended away from the loaded one, apart from `equal64` (pointers).
    public enum Condition: Equatable, Sendable {
        case equal, notEqual, anyBitOf, always, equal64
        /// Unsigned greater-than another register, 64 bits.
        case aboveRegister(Register)
    }

    public let code: UInt8
    public let destination: Register
    public let source: Register
    public let offset: Int16
    public let immediate: Int32

    init(_ code: UInt8, _ destination: Register = .r0, _ source: Register = .r0, offset: Int16 = 0, immediate: Int32 = 0) {
        self.code = code
        self.destination = destination
        self.source = source
        self.offset = offset
        self.immediate = immediate
    }

    /// As the kernel reads it on a little-endian host (x86-64, arm64): code, the registers
    /// (destination in the low nibble), the offset, the immediate.
    public var bytes: [UInt8] {
        let offsetBits = UInt16(bitPattern: offset), immediateBits = UInt32(bitPattern: immediate)
        return [code, source.rawValue << 4 | destination.rawValue, UInt8(offsetBits & 0xFF), UInt8(offsetBits >> 8),
                UInt8(immediateBits & 0xFF), UInt8(immediateBits >> 8 & 0xFF), UInt8(immediateBits >> 16 & 0xFF), UInt8(immediateBits >> 24)]
    }

    static func move(_ destination: Register, from source: Register) -> BPFInstruction { BPFInstruction(0xBF, destination, source) }
    static func move(_ destination: Register, _ value: Int32) -> BPFInstruction { BPFInstruction(0xB7, destination, immediate: value) }
    static func add(_ destination: Register, _ value: Int32) -> BPFInstruction { BPFInstruction(0x07, destination, immediate: value) }
    /// 32 bits (ALU), as the comparisons that follow it.
    static func and32(_ destination: Register, _ value: Int32) -> BPFInstruction { BPFInstruction(0x54, destination, immediate: value) }
    static func or32(_ destination: Register, _ value: Int32) -> BPFInstruction { BPFInstruction(0x44, destination, immediate: value) }

    static func load(_ destination: Register, _ size: Size, from source: Register, offset: Int16) -> BPFInstruction {
        BPFInstruction(0x61 | size.rawValue, destination, source, offset: offset)
    }

    /// From a register.
    static func store(_ size: Size, _ base: Register, offset: Int16, from source: Register) -> BPFInstruction {
        BPFInstruction(0x63 | size.rawValue, base, source, offset: offset)
    }

    static func storeImmediate(_ size: Size, to base: Register, offset: Int16, _ value: Int32) -> BPFInstruction {
        BPFInstruction(0x62 | size.rawValue, base, offset: offset, immediate: value)
    }

    static func call(_ helper: Helper) -> BPFInstruction { BPFInstruction(0x85, immediate: helper.rawValue) }
    static let exit = BPFInstruction(0x95)

    static func conditional(_ condition: Condition, _ register: Register, _ value: Int32, offset: Int16) -> BPFInstruction {
        switch condition {
        case .equal: return BPFInstruction(0x16, register, offset: offset, immediate: value)
        case .notEqual: return BPFInstruction(0x56, register, offset: offset, immediate: value)
        case .anyBitOf: return BPFInstruction(0x46, register, offset: offset, immediate: value)
        case .always: return BPFInstruction(0x05, offset: offset)
        case .equal64: return BPFInstruction(0x15, register, offset: offset, immediate: value)
        case .aboveRegister(let other): return BPFInstruction(0x2D, register, other, offset: offset)
        }
    }

    /// What a load of these bytes in network order gives on this host.
    static func networkOrder(half: UInt16) -> Int32 { Int32(half.bigEndian) }
    static func networkOrder(word: UInt32) -> Int32 { Int32(bitPattern: word.bigEndian) }
}

extension HardwareAddress {
    /// The first four bytes as a load from the packet gives them.
    var firstWord: Int32 {
        BPFInstruction.networkOrder(word: UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
    }

    /// The last two.
    var lastHalf: Int32 { BPFInstruction.networkOrder(half: UInt16(bytes[4]) << 8 | UInt16(bytes[5])) }
}
