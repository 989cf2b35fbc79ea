import Balancer
import BalancerCore
import CCapabilities

#if canImport(Glibc)
import Glibc
#endif

/// `-j dir` and `-u user`, done after the sockets are bound: chroot into the directory,
/// then take the user's groups and ids for good. Paths used later (`-F` on reload, `log`,
/// `write`, `-w`) are then inside the directory. glibc applies the id changes to every
/// thread, NIO's included. With `keepNetworkCapabilities` (vrrp), the calling thread keeps
/// CAP_NET_RAW (adverts, ARP) and CAP_NET_ADMIN (the VIPs) and nothing else; the VRRP
/// threads started from it later inherit them, the others have none. With `keepBPF`
/// (`second_chance`) it keeps CAP_BPF too, to load the second chance's programs.
enum Privileges {
    static func confine(chroot directory: String?, user: String?, keepNetworkCapabilities: Bool = false,
                        keepBPF: Bool = false) throws {
        // The user is looked up before chroot, while /etc/passwd is still reachable.
        let account = try user.map { name -> (uid: uid_t, gid: gid_t) in
            guard let entry = getpwnam(name) else { throw RuntimeFailure(description: "-u: no user '\(name)'") }
            let ids = (entry.pointee.pw_uid, entry.pointee.pw_gid)
            guard initgroups(name, ids.1) == 0, setgid(ids.1) == 0 else {
                throw RuntimeFailure(description: "-u \(name): cannot take the user's groups: \(SystemErrorText.describe(errno: errno))")
            }
            return ids
        }
        if let directory {
            guard chroot(directory) == 0, chdir("/") == 0 else {
                throw RuntimeFailure(description: "-j \(directory): cannot chroot: \(SystemErrorText.describe(errno: errno))")
            }
        }
        if let account, let user {
            let keep = keepNetworkCapabilities && account.uid != 0
            if keep, penha_keep_capabilities(1) != 0 {
                throw RuntimeFailure(description: "-u \(user): cannot keep capabilities: \(SystemErrorText.describe(errno: errno))")
            }
            guard setuid(account.uid) == 0 else {
                throw RuntimeFailure(description: "-u \(user): cannot take the user's id: \(SystemErrorText.describe(errno: errno))")
            }
            if keep {
                guard penha_limit_to_network_capabilities(keepBPF ? 1 : 0) == 0 else {
                    throw RuntimeFailure(description: "-u \(user): cannot keep CAP_NET_RAW and CAP_NET_ADMIN\(keepBPF ? " and CAP_BPF" : "") for vrrp: "
                                         + SystemErrorText.describe(errno: errno))
                }
                _ = penha_keep_capabilities(0)
            }
        }
    }
}
