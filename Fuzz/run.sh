#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/Package.swift) and runs each for a bounded time:
#   Fuzz/run.sh [seconds-per-target]     (default 30)
# Exits 1 when a target crashes, hangs or exceeds its time; the input that did it is kept
# in Fuzz/crashes/. Inputs that found new code go to Fuzz/.build/corpus/ for the next run.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-30}
if [[ ! $seconds =~ ^[0-9]+$ ]] || ((seconds < 1 || seconds > 86400)); then
    echo "usage: Fuzz/run.sh [seconds-per-target, 1-86400]" >&2
    exit 2
fi
targets=(FuzzVRRPDecode FuzzCommand FuzzConfigFile FuzzForwardedFor FuzzProxyHeader FuzzIncludes FuzzLogLines FuzzSyncSession FuzzHandover)
# The rewriter walks ByteBuffers byte by byte, slow in a sanitized debug build: shorter
# inputs, still well past its smallest head limit (64 bytes), give it four times the runs.
declare -A max_len=([FuzzForwardedFor]=1024)
mkdir -p crashes .build/logs

# gold warns about every ASan symbol it cannot export: noise, not a problem.
for target in "${targets[@]}"; do
    if ! swift build --quiet --scratch-path .build -c debug -Xswiftc -sanitize=fuzzer,address --product "$target" 2>&1 |
        { grep -v "Cannot export local symbol" || true; }; then
        echo "fuzz: building $target failed" >&2
        exit 1
    fi
done

# libFuzzer reports a crash itself; Swift's backtracer, reading the stack under ASan, would
# add a false stack-buffer-underflow report after it.
export SWIFT_BACKTRACE=enable=no
failed=()
for target in "${targets[@]}"; do
    mkdir -p ".build/corpus/$target"
    log=".build/logs/$target.log"
    # -timeout: one input running longer is a hang. The hard timeout covers start-up, the
    # corpus load and anything libFuzzer's own limit misses.
    if timeout --kill-after=10 $((seconds + 120)) ".build/debug/$target" \
        -max_total_time="$seconds" -max_len="${max_len[$target]:-4096}" -timeout=10 \
        -artifact_prefix="crashes/$target-" \
        ".build/corpus/$target" "corpus/$target" >"$log" 2>&1; then
        echo "fuzz: $target: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)s, no crash"
    else
        status=$?
        echo "fuzz: $target FAILED (exit $status); the whole report is in Fuzz/$log:" >&2
        grep -aE "Fatal error|failed:|ERROR:|SUMMARY:|Test unit written|Slowest unit" "$log" >&2 || tail -20 "$log" >&2
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz: ${failed[*]} failed; inputs in Fuzz/crashes/" >&2
    exit 1
fi
