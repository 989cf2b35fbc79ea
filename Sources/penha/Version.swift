/// penha's version: `penha --version`, the Debian package's version, the metrics' build info.
enum PenhaVersion {
    static let current = "0.9.0"
}
