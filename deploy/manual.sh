#!/usr/bin/env bash
# Prints the man page penha(8): the options and subcommands from penha's own command-line
# table (`penha --generate-manual`, the table that its parser and --help read); then README's
# sections on the command language, VRRP, signals and systemd (deploy/readme-to-mdoc.py:
# README's command table is tested against the code's, so every command is in the page);
# then the hand-written rest (deploy/penha.8.in: environment, files, exit status, examples).
#   ./deploy/manual.sh [PENHA] > penha.8  (PENHA: the binary; default: the debug build, built if needed)
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
penha=${1:-}
if [ -z "$penha" ]; then
    swift build --product penha >&2
    penha="$(swift build --show-bin-path)/penha"
fi
printf '.Dd %s\n.Dt PENHA 8\n.Os\n' "$(git log -1 --format=%cs 2>/dev/null || date +%F)"
"$penha" --generate-manual
readme_part
cat deploy/penha.8.in
