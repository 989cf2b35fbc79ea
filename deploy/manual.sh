#!/usr/bin/env bash
# Prints the man page penha(1): the options and subcommands from swift-argument-parser's
# generate-manual plugin (on the debug build, which `swift build` has made already and
# whose help is the release build's), then the hand-written sections (deploy/penha.1.in:
# the command language, VRRP, signals, environment, files, exit status).
#   ./deploy/manual.sh > penha.1
set -euo pipefail
cd "$(dirname "$0")/.."
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
swift package --allow-writing-to-directory "$generated" generate-manual --configuration debug \
    --date "$(git log -1 --format=%cs 2>/dev/null || date +%F)" --output-directory "$generated" >&2
# The plugin's EXIT STATUS section is generic; ours, in penha.1.in, says what penha's mean.
sed '/^\.Sh "EXIT STATUS"/,$d' "$generated/penha.1"
cat deploy/penha.1.in
