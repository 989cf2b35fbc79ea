import NIOCore
import XCTest
@testable import BalancerCore
@testable import Engine
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

final class PeerAddressTests: XCTestCase {
    /// The engine writes an IPv4 client's text itself (per connection, without inet_ntop), and
    /// an IPv6 client's through `Endpoint`: each as the logs and `connection N` show it.
    func testTheClientTextIsEndpointsText() throws {
        for (host, port, text) in [("0.0.0.0", 0, "0.0.0.0:0"), ("255.255.255.255", 65535, "255.255.255.255:65535"),
                                   ("192.0.2.10", 8080, "192.0.2.10:8080"), ("127.0.0.1", 80, "127.0.0.1:80"),
                                   ("10.200.3.4", 1, "10.200.3.4:1"), ("2001:db8::7", 443, "[2001:db8::7]:443"),
                                   ("2001:db8:0:0:1::", 1, "[2001:db8:0:0:1::]:1"), ("::1", 80, "[::1]:80")] {
            let address = try SocketAddress(ipAddress: host, port: port)
            var peer = PeerAddress()
            address.withSockAddr { pointer, length in
                withUnsafeMutableBytes(of: &peer.storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: length)) }
            }
            XCTAssertEqual(peer.text, text, host)
            XCTAssertEqual(peer.text, Endpoint.describe(address), host)
            XCTAssertEqual(peer.clientKey, ClientKey(address), host)
        }
    }

    /// A PROXY protocol header's client becomes the peer, its key and its text, and reads back.
    func testAProxyHeadersClientIsThePeer() throws {
        for (address, port, text) in [("192.0.2.7", UInt16(56324), "192.0.2.7:56324"), ("2001:db8::7", 443, "[2001:db8::7]:443")] {
            let endpoint = ProxyEndpoint(address: try XCTUnwrap(IPAddress(address)), port: port)
            let peer = PeerAddress(endpoint)
            XCTAssertEqual(peer.text, text)
            XCTAssertEqual(peer.proxyEndpoint, endpoint)
            XCTAssertEqual(peer.clientKey, ClientKey(try SocketAddress(ipAddress: address, port: Int(port))))
        }
    }
}

final class RelayBufferTests: XCTestCase {
    private func bytes(_ count: Int, _ value: UInt8) -> [UInt8] { [UInt8](repeating: value, count: count) }

    private func drain(_ pipe: inout RelayBuffer, _ pool: inout BufferPool, chunk: Int = .max) -> [UInt8] {
        var out: [UInt8] = []
        // Bounded: each round takes at least one byte.
        while pipe.pending > 0 {
            let taken = pipe.withPending { Array($0.prefix(chunk)) }
            out += taken
            pipe.didWrite(taken.count, &pool)
        }
        return out
    }

    /// Backpressure: a pipe is full at one buffer's worth, and reading stops there.
    func testAPipeIsFullAtOneBufferAndOffersNoMoreRoom() {
        var pool = BufferPool()
        var pipe = RelayBuffer()
        let space = pipe.readableSpace(&pool)!
        XCTAssertEqual(space.count, BufferPool.size)
        pipe.didRead(BufferPool.size)
        XCTAssertTrue(pipe.isFull)
        XCTAssertNil(pipe.readableSpace(&pool))
    }

    /// What a transformation adds beyond the buffer is written after the buffer's bytes, in
    /// order, however the writes are split; once drained the buffer goes back to the pool.
    func testBytesBeyondTheBufferKeepTheirOrderAndTheBufferIsGivenBack() {
        var pool = BufferPool()
        var pipe = RelayBuffer()
        let first = bytes(BufferPool.size - 10, 1), second = bytes(100, 2), third = bytes(5, 3)
        first.withUnsafeBytes { pipe.append($0, &pool) }
        second.withUnsafeBytes { pipe.append($0, &pool) }
        XCTAssertNil(pipe.readableSpace(&pool), "no direct read while bytes are spilled")
        third.withUnsafeBytes { pipe.append($0, &pool) }
        XCTAssertEqual(drain(&pipe, &pool, chunk: 777), first + second + third)
        XCTAssertNil(pipe.buffer, "an idle pipe holds no buffer")
        XCTAssertNotNil(pipe.readableSpace(&pool), "and reads go straight into a buffer again")
    }

    /// Bulk: splicing starts only once the buffered bytes are out (they go first), counts what
    /// the kernel pipe holds as pending, and gives the pipe back to the pool once it is empty.
    func testABulkTransferSplicesAfterTheBufferedBytesAndGivesThePipeBack() throws {
        var pool = BufferPool()
        var relay = RelayBuffer()
        _ = relay.readableSpace(&pool)
        relay.didRead(10)
        relay.isBulk = true
        XCTAssertFalse(relay.splices, "the buffered bytes are written before any spliced ones")
        _ = drain(&relay, &pool)
        XCTAssertTrue(relay.splices)
        let kernelPipe = try XCTUnwrap(relay.pipeForSplice(&pool))
        var bytes: [UInt8] = [1, 2, 3, 4, 5]
        XCTAssertEqual(write(kernelPipe.write, &bytes, 5), 5)
        relay.didSpliceIn(5)
        XCTAssertEqual(relay.pending, 5)
        XCTAssertEqual(read(kernelPipe.read, &bytes, 5), 5)
        relay.didSpliceOut(5, &pool)
        XCTAssertNil(relay.kernelPipe, "an empty pipe is not held")
        XCTAssertEqual(pool.takePipe()?.read, kernelPipe.read, "it waits in the pool for the next transfer")
    }
}
