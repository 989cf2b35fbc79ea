#!/usr/bin/env bash
# Prints the man page penha(8): the options and subcommands from swift-argument-parser's
# generate-manual plugin (on the debug build, which `swift build` has made already and whose
# help is the release build's); then README's sections on the command language, VRRP,
# signals and systemd (deploy/readme-to-mdoc.py: README's command table is tested against
# the code's, so every command is in the page); then the hand-written rest (deploy/penha.8.in:
# environment, files, exit status, examples).
#   ./deploy/manual.sh > penha.8
#   ./deploy/manual.sh --readme-part      (README's part alone, without building: the tests read it)
set -euo pipefail
cd "$(dirname "$0")/.."
readme_part() {
    python3 deploy/readme-to-mdoc.py README.md 'Commands=COMMANDS' 'Health checks' 'Metrics' \
        'Two hosts sharing a VIP=VRRP' 'Changing VRRP at runtime' 'The client table follows the VIP' 'Firewall' \
        'Signals=SIGNALS' 'Reload' \
        'Running under systemd=SYSTEMD' 'Reload and restart' 'Secrets and logs' 'Several services on one VIP' 'Sandboxing'
}
if [ "${1:-}" = --readme-part ]; then
    readme_part
    exit
fi
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
swift package --allow-writing-to-directory "$generated" generate-manual --configuration debug \
    --date "$(git log -1 --format=%cs 2>/dev/null || date +%F)" --output-directory "$generated" >&2
# Section 8: /usr/sbin. The plugin's EXIT STATUS section is generic; ours, in penha.8.in,
# says what penha's mean.
sed -e 's/^\.Dt PENHA 1$/.Dt PENHA 8/' -e '/^\.Sh "EXIT STATUS"/,$d' "$generated/penha.1"
readme_part
cat deploy/penha.8.in
