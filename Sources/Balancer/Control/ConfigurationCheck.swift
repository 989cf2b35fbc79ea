import BalancerCore
import VRRP

#if canImport(Glibc)
import Glibc
#endif

/// What `penha check` finds beyond parsing: the parts of a configuration that only the
/// system can judge (host names, TLS files, interfaces, the files penha writes), each looked
/// at with the code `run` uses, without binding, writing or changing anything.
public enum ConfigurationCheck {
    /// Every problem of `configuration` and of the pid file `run` would write; `lines` are
    /// the commands it was made from, so that a problem with a line's server, vrrp instance
    /// or log names that line's file:line.
    public static func problems(of configuration: Configuration, lines: [ConfigLine], pidFile: String?) -> [ConfigurationError] {
        var problems: [ConfigurationError] = []
        let named: [(String, ServerSpec?)] = configuration.servers.enumerated().map { ("server \($0.offset)", $0.element) }
            + [("-e", configuration.emergency), ("-B", configuration.abuse)]
        for (what, spec) in named {
            guard let spec else { continue }
            do {
                _ = try ServerSpec.resolve(host: spec.host, port: spec.port)
            } catch {
                problems.append(ConfigurationError("\(what): cannot resolve host '\(spec.host)'").at(origin(of: spec.host, in: lines)))
            }
        }
        if configuration.tls.isEnabled {
            do {
                _ = try TLSContext(settings: configuration.tls)
            } catch {
                problems.append(ConfigurationError("TLS: \(error)"))
            }
        }
        for instance in configuration.vrrpInstances {
            do {
                _ = try NetworkInterface(name: instance.interface)
            } catch {
                let origin = lines.last { $0.command == .vrrp(instance) }?.origin
                problems.append(ConfigurationError("vrrp vrid \(instance.vrid): \(error)").at(origin))
            }
            // Loading a program needs CAP_BPF: a check run by another user cannot tell.
            guard instance.secondChance != nil, geteuid() == 0 else { continue }
            do {
                try SecondChanceSupport.check()
            } catch {
                let origin = lines.last { $0.command == .vrrp(instance) }?.origin
                problems.append(ConfigurationError("vrrp vrid \(instance.vrid): second_chance: this kernel cannot: \(error)").at(origin))
            }
        }
        if let bgp = configuration.bgp, let secondChance = bgp.secondChance {
            let origin = lines.last { $0.command == .bgp(bgp) }?.origin
            do {
                _ = try NetworkInterface(name: secondChance.interface)
                // Loading a program needs CAP_BPF: a check run by another user cannot tell.
                if geteuid() == 0 { try SecondChanceSupport.check() }
            } catch {
                problems.append(ConfigurationError("bgp second_chance: \(error)").at(origin))
            }
        }
        if let sync = configuration.sync {
            do {
                _ = try ClientSyncKey.read(sync.keyFile)
            } catch {
                problems.append(ConfigurationError("\(error)").at(lines.last { $0.command == .sync(sync) }?.origin))
            }
        }
        if let log = configuration.logFile {
            do {
                try LogFile.check(log)
            } catch {
                problems.append(ConfigurationError("\(error)").at(lines.last { $0.command == .file(.log, .set(log)) }?.origin))
            }
        }
        for replaced in [configuration.webStatsFile, pidFile].compactMap({ $0 }) {
            do {
                try FileAccess.checkReplaceable(replaced)
            } catch {
                problems.append(ConfigurationError("\(error)"))
            }
        }
        return problems
    }

    /// The last line that gave a server this host.
    private static func origin(of host: String, in lines: [ConfigLine]) -> String? {
        lines.last { $0.command.preparation.contains(.resolve(host: host)) }?.origin
    }
}

extension ConfigFile {
    /// Reads and parses `path` past bad lines: the good lines and every error, with file:line.
    public static func readAll(_ path: String) -> (lines: [ConfigLine], errors: [ConfigurationError]) {
        do {
            return parseAll(try contents(of: path), name: path, reading: contents(of:))
        } catch let error as ConfigurationError {
            return ([], [error])
        } catch {
            return ([], [ConfigurationError("\(error)")])
        }
    }
}
