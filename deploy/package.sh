#!/usr/bin/env bash
# Builds penha_VERSION_ARCH.deb: the README's production build linked with
# --static-swift-stdlib, so the host needs no Swift toolchain, only the shared libraries
# named in Depends. Installs /usr/sbin/penha, the systemd units penha.service and
# penha@.service, /etc/penha/penha.conf (a commented sample, a conffile), the man page
# penha(8), bash/zsh completions, the examples, and the maintainer scripts of deploy/debian/.
#   ./deploy/package.sh [OUTPUT_DIR]        (default: the current directory)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "${1:-.}"
output=$(realpath "${1:-.}")

for tool in dpkg-deb gzip python3; do
    command -v "$tool" >/dev/null || { echo "package.sh: $tool is needed (apt-get install dpkg gzip python3)" >&2; exit 2; }
done

# Debian's hardening: full RELRO with immediate binding (bindnow). Not _FORTIFY_SOURCE: it is
# a C macro, and -Xcc hands it to the Swift compiler's importer too, which then refuses glibc's
# fortified inline wrappers as "different definitions in different modules" (CNetlinkRoute,
# COpenSSL); Swift code checks its own bounds, and the C shims' copies are of fixed sizes
# (deploy/debian/lintian-overrides).
hardening=(-Xlinker -z -Xlinker relro -Xlinker -z -Xlinker now)
# The size (issue 23: at most 12 MB, .ci/run checks it). swiftc exports every symbol for
# dladdr (-export-dynamic): 1.3 MB of dynamic symbols, and code the linker could not drop; a
# crash is read from its addresses and the unstripped build instead (README, "Crashes"). The
# Swift toolchain's lld (Debian 12's lld 14 predates it) packs the relative relocations
# (DT_RELR, glibc 2.36: 1 MB less) and folds identical functions (--icf=all).
lld="$(dirname "$(readlink -f "$(command -v swift)")")/ld.lld"
[ -x "$lld" ] || { echo "package.sh: $lld is missing: the Swift toolchain's lld links the package" >&2; exit 2; }
size=(-Xswiftc -use-ld=lld -Xlinker --no-export-dynamic -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --icf=all)
echo "==> release build (static Swift runtime)"
swift build -c release -Xswiftc -enforce-exclusivity=unchecked --static-swift-stdlib "${hardening[@]}" "${size[@]}" 2>&1 | tail -n 1
binary="$(swift build -c release --show-bin-path)/penha"
version=$("$binary" --version)
architecture=$(dpkg --print-architecture)
# One maintainer, named in the changelog's last entry, whose version must be the binary's.
changelog_version=$(sed -n '1s/^penha (\([^)]*\)).*/\1/p' deploy/debian/changelog)
if [ "$changelog_version" != "$version" ]; then
    echo "package.sh: deploy/debian/changelog's last entry is $changelog_version, penha --version says $version" >&2
    exit 2
fi
maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' deploy/debian/changelog | head -n 1)

root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/sbin/penha"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/sbin/penha"
install -D -m 0644 deploy/penha.service "$root/lib/systemd/system/penha.service"
# The template: the same unit, its files named by the instance.
sed -e 's|/etc/penha/penha\.conf|/etc/penha/%i.conf|g' -e 's|/run/penha/penha\.sock|/run/penha/%i.sock|g' \
    -e 's|^Description=.*|Description=penha load balancer %i (/etc/penha/%i.conf)|' \
    deploy/penha.service > "$root/lib/systemd/system/penha@.service"
chmod 0644 "$root/lib/systemd/system/penha@.service"
install -D -m 0644 deploy/penha.conf "$root/etc/penha/penha.conf"
doc="$root/usr/share/doc/penha"
install -d "$doc/examples"
install -m 0644 deploy/examples/*.conf "$doc/examples/"
install -m 0644 README.md deploy/debian/copyright "$doc/"
install -D -m 0644 deploy/debian/lintian-overrides "$root/usr/share/lintian/overrides/penha"
gzip -9n < deploy/debian/changelog > "$doc/changelog.gz"
mkdir -p "$root/usr/share/man/man8" "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions"
deploy/manual.sh "$binary" | gzip -9n > "$root/usr/share/man/man8/penha.8.gz"
# bash-completion sources the file: a #! line would say it is a program.
"$binary" --generate-completion-script bash | sed '1{/^#!/d}' > "$root/usr/share/bash-completion/completions/penha"
"$binary" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_penha"
chmod 0644 "$root/usr/share/bash-completion/completions/penha" "$root/usr/share/zsh/vendor-completions/_penha"

mkdir -p "$root/DEBIAN"
echo /etc/penha/penha.conf > "$root/DEBIAN/conffiles"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$root/DEBIAN/"
(cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
cat > "$root/DEBIAN/control" <<CONTROL
Package: penha
Version: $version
Architecture: $architecture
Maintainer: $maintainer
Depends: libc6 (>= 2.36), libssl3 (>= 3.0), libnl-3-200, libnl-route-3-200, libbpf1, libstdc++6, libgcc-s1
Section: net
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: pen, the TCP/UDP load balancer, rebuilt in Swift with VRRP built in
 penha balances connections across servers with pen's command line and rules
 (client tracking, blacklisting, emergency server), terminates TLS, and shares a
 virtual IP between two hosts with VRRP (RFC 5798) without keepalived.
CONTROL

package="$output/penha_${version}_${architecture}.deb"
dpkg-deb --root-owner-group --build "$root" "$package" >/dev/null
echo "==> $package"
