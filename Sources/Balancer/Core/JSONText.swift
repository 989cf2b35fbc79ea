/// An `Encodable` value as compact JSON with its keys sorted and `/` written as is: what
/// `penha status --json` printed with Foundation's JSONEncoder (`.sortedKeys`,
/// `.withoutEscapingSlashes`), without Foundation, whose libraries were most of the binary.
/// Absent optionals are left out, as JSONEncoder does.
public enum JSONText {
    public static func encode<Value: Encodable>(_ value: Value) throws -> String {
        let root = Node()
        try value.encode(to: NodeEncoder(node: root, codingPath: []))
        var text = ""
        root.write(to: &text)
        return text
    }
}

/// A value being encoded: a container fills it in, and it is written once complete.
private final class Node {
    enum Content {
        case empty
        /// A number, `true`/`false`, `null` or a quoted string, written already.
        case scalar(String)
        case array([Node])
        case object([String: Node])
    }

    var content = Content.empty

    func write(to text: inout String) {
        switch content {
        case .empty:
            // An encode(to:) that made no container: JSONEncoder writes `{}`.
            text += "{}"
        case .scalar(let scalar):
            text += scalar
        case .array(let elements):
            text += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { text += "," }
                element.write(to: &text)
            }
            text += "]"
        case .object(let members):
            text += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { text += "," }
                text += JSONText.quoted(key) + ":"
                members[key]?.write(to: &text)
            }
            text += "}"
        }
    }

    /// A member of this object, made (and the node an object) if new.
    func member(_ key: String) -> Node {
        var members: [String: Node] = [:]
        if case .object(let existing) = content { members = existing }
        let node = members[key] ?? Node()
        members[key] = node
        content = .object(members)
        return node
    }

    func appendElement() -> Node {
        var elements: [Node] = []
        if case .array(let existing) = content { elements = existing }
        let node = Node()
        content = .array(elements + [node])
        return node
    }

    /// Scalars written at once; anything else encodes itself into this node.
    func set<Value: Encodable>(_ value: Value, codingPath: [CodingKey]) throws {
        switch value {
        case let flag as Bool:
            content = .scalar(flag ? "true" : "false")
        case let text as String:
            content = .scalar(JSONText.quoted(text))
        case let integer as any BinaryInteger:
            content = .scalar("\(integer)")
        case let number as any BinaryFloatingPoint:
            let double = Double(number)
            guard double.isFinite else {
                throw EncodingError.invalidValue(double, .init(codingPath: codingPath, debugDescription: "not a JSON number"))
            }
            content = .scalar("\(double)")
        default:
            try value.encode(to: NodeEncoder(node: self, codingPath: codingPath))
        }
    }
}

extension JSONText {
    /// A JSON string: `"` and `\` escaped, control characters as JSONEncoder writes them.
    static func quoted(_ text: String) -> String {
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            case "\u{08}": quoted += "\\b"
            case "\u{0C}": quoted += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }
}

private struct NodeEncoder: Encoder {
    let node: Node
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.content {} else { node.content = .object([:]) }
        return KeyedEncodingContainer(KeyedContainer(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if case .array = node.content {} else { node.content = .array([]) }
        return UnkeyedContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer {
        SingleValueContainer(node: node, codingPath: codingPath)
    }
}

/// The generic `encode` stands for each primitive one too (Bool, String, the integers...).
private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    let codingPath: [CodingKey]

    mutating func encodeNil(forKey key: Key) throws {
        node.member(key.stringValue).content = .scalar("null")
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try node.member(key.stringValue).set(value, codingPath: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> Encoder {
        NodeEncoder(node: node.member("super"), codingPath: codingPath)
    }

    mutating func superEncoder(forKey key: Key) -> Encoder {
        NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let node: Node
    let codingPath: [CodingKey]
    var count: Int {
        if case .array(let elements) = node.content { return elements.count }
        return 0
    }

    mutating func encodeNil() throws {
        node.appendElement().content = .scalar("null")
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try node.appendElement().set(value, codingPath: codingPath)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        NodeEncoder(node: node.appendElement(), codingPath: codingPath).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        NodeEncoder(node: node.appendElement(), codingPath: codingPath).unkeyedContainer()
    }

    mutating func superEncoder() -> Encoder {
        NodeEncoder(node: node.appendElement(), codingPath: codingPath)
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let node: Node
    let codingPath: [CodingKey]

    mutating func encodeNil() throws {
        node.content = .scalar("null")
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try node.set(value, codingPath: codingPath)
    }
}
