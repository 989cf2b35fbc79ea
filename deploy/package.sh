#!/usr/bin/env bash
# Builds penha_VERSION_ARCH.deb: the README's production build linked with
# --static-swift-stdlib, so the host needs no Swift toolchain, only the shared libraries
# named in Depends. Installs /usr/sbin/penha, the systemd unit, /etc/penha/penha.conf (a
# commented sample, a conffile), the man page penha(1) and bash/zsh completions.
#   ./deploy/package.sh [OUTPUT_DIR]        (default: the current directory)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "${1:-.}"
output=$(realpath "${1:-.}")

for tool in dpkg-deb gzip; do
    command -v "$tool" >/dev/null || { echo "package.sh: $tool is needed (apt-get install dpkg gzip)" >&2; exit 2; }
done

echo "==> release build (static Swift runtime)"
swift build -c release -Xswiftc -enforce-exclusivity=unchecked --static-swift-stdlib 2>&1 | tail -n 1
binary="$(swift build -c release --show-bin-path)/penha"
version=$("$binary" --version)
architecture=$(dpkg --print-architecture)

root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/sbin/penha"
strip --strip-unneeded "$root/usr/sbin/penha"
install -D -m 0644 deploy/penha.service "$root/lib/systemd/system/penha.service"
install -D -m 0644 deploy/penha.conf "$root/etc/penha/penha.conf"
install -D -m 0644 deploy/examples/node-a.conf "$root/usr/share/doc/penha/examples/node-a.conf"
install -D -m 0644 deploy/examples/node-b.conf "$root/usr/share/doc/penha/examples/node-b.conf"
install -D -m 0644 README.md "$root/usr/share/doc/penha/README.md"
mkdir -p "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions"
deploy/manual.sh | gzip -9n > "$root/usr/share/man/man1/penha.1.gz"
"$binary" --generate-completion-script bash > "$root/usr/share/bash-completion/completions/penha"
"$binary" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_penha"

mkdir -p "$root/DEBIAN"
echo /etc/penha/penha.conf > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<CONTROL
Package: penha
Version: $version
Architecture: $architecture
Maintainer: penha maintainers <penha@localhost>
Depends: libc6 (>= 2.36), libssl3 (>= 3.0), libnl-3-200, libnl-route-3-200, libstdc++6, libgcc-s1
Section: net
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: pen, the TCP/UDP load balancer, rebuilt in Swift with VRRP built in
 penha balances connections across servers with pen's command line and rules
 (client tracking, blacklisting, emergency server), terminates TLS, and shares a
 virtual IP between two hosts with VRRP (RFC 5798) without keepalived.
CONTROL
# The unit is not started on install: /etc/penha/penha.conf is a sample until edited.
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTINST
chmod 0755 "$root/DEBIAN/postinst"

package="$output/penha_${version}_${architecture}.deb"
dpkg-deb --root-owner-group --build "$root" "$package" >/dev/null
echo "==> $package"
