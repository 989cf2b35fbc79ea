import Foundation
import XCTest

/// A fresh directory of the test's own under the system's temporary one, removed with
/// `removeTemporaryDirectory`.
func makeTemporaryDirectory(_ name: String) -> String {
    let directory = NSTemporaryDirectory() + "penha-\(name)-\(getpid())-\(UUID().uuidString.prefix(8))"
    XCTAssertEqual(mkdir(directory, 0o755), 0, directory)
    return directory
}

func removeTemporaryDirectory(_ directory: String) {
    try? FileManager.default.removeItem(atPath: directory)
}
