#!/usr/bin/env bash
# Side-by-side benchmark: penha vs pen vs HAProxy (and nginx directly, the ceiling), on
# loopback, two nginx backends. See bench/README.md. Usage:
#   bench/run.sh [--quick] [--rounds N] [--duration SECONDS] [--idle N] [--no-install]
#                [--penha PATH] [--raw FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=$PWD/bench
LIB="python3 $BENCH/benchlib.py"

ROUNDS=3 DURATION=10 IDLE=10000 INSTALL=1 PENHA="" RAW=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1 DURATION=3 IDLE=2000 ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --idle) IDLE=$2; shift ;;
        --no-install) INSTALL=0 ;;
        --penha) PENHA=$2; shift ;;
        --raw) RAW=$2; shift ;;
        -h|--help) sed -n 2,5p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

# ---- file descriptors: raise the soft limit as far as the hard limit allows ----------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# A balancer holds two fds per relayed connection (client side, backend side).
MAXIDLE=$(( (NOFILE - 200) / 2 ))
if [ "$IDLE" -gt "$MAXIDLE" ]; then
    echo "note: RLIMIT_NOFILE is $NOFILE here; idle connections lowered from $IDLE to $MAXIDLE" >&2
    IDLE=$MAXIDLE
fi

# ---- tools -------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if [ "$INSTALL" = 1 ]; then
    missing=()
    need nginx || missing+=(nginx-light)
    need wrk || missing+=(wrk)
    need pen || missing+=(pen)
    need haproxy || missing+=(haproxy)
    need curl || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq
        for p in "${missing[@]}"; do
            # Each separately: a package missing from this distribution is reported and skipped.
            if apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
                DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$p" >/dev/null
            elif [ "$p" = nginx-light ] && apt-cache policy nginx 2>/dev/null | grep -q 'Candidate: [0-9]'; then
                DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx >/dev/null
            else
                echo "note: package $p is not available here; carrying on without it" >&2
            fi
        done
    fi
fi
export PATH=$PATH:/usr/sbin:/sbin
for t in nginx wrk curl python3; do
    need "$t" || { echo "error: $t is required" >&2; exit 1; }
done

# ---- penha, release build ----------------------------------------------------------------
if [ -z "$PENHA" ]; then
    echo "building penha (release, .build-bench)..." >&2
    # The README's production build.
    if ! swift build -c release -Xswiftc -enforce-exclusivity=unchecked --scratch-path .build-bench \
        >/tmp/penha-bench-build.log 2>&1; then
        # Whole-module release builds of this tree may fail where incremental ones succeed
        # (see bench/RESULTS.md); fall back to per-file optimisation rather than give up.
        echo "note: whole-module release build failed (log: /tmp/penha-bench-build.log);" \
             "retrying with -no-whole-module-optimization" >&2
        # Its own scratch path, so the two flag sets do not rebuild each other's artefacts.
        swift build -c release --scratch-path .build-bench-nowmo -Xswiftc -enforce-exclusivity=unchecked \
            -Xswiftc -no-whole-module-optimization >/tmp/penha-bench-build.log 2>&1 \
            || { tail -20 /tmp/penha-bench-build.log >&2; exit 1; }
        PENHA_BUILD="release, -no-whole-module-optimization"
        PENHA=$PWD/.build-bench-nowmo/release/penha
    else
        PENHA_BUILD="release"
        PENHA=$PWD/.build-bench/release/penha
    fi
else
    PENHA_BUILD="given: $PENHA"
fi

# ---- temp dir, process tracking, cleanup -------------------------------------------------
TMP=$(mktemp -d /tmp/penha-bench.XXXXXX)
PIDS=()
stop_pid() {  # TERM, wait up to 5 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    # Anything still alive that was started from our temp dir's configs is a bug: report it.
    if pgrep -f "$TMP" >/dev/null 2>&1; then
        echo "warning: processes left running:" >&2; pgrep -af "$TMP" >&2 || true
    fi
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && echo "warning: pid $pid still running" >&2
    done
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r P_B1 P_B2 P_LB <<<"$($LIB freeports 3)"
RESULTS=$TMP/results.tsv
: >"$RESULTS"

# ---- content -----------------------------------------------------------------------------
mkdir -p "$TMP/www"
head -c 100 /dev/zero | tr '\0' 'x' >"$TMP/www/small"   # 100-byte body
head -c $((64 * 1024 * 1024)) /dev/urandom >"$TMP/www/big"
chmod 755 "$TMP" "$TMP/www"; chmod 644 "$TMP/www/small" "$TMP/www/big"   # nginx workers run as www-data

# ---- backends ----------------------------------------------------------------------------
start_nginx() {  # name port
    local name=$1 port=$2 dir=$TMP/$1
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $NOFILE; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $TMP/www;
    }
}
EOF
    nginx -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout" 2>&1 &
    PIDS+=($!)
}
wait_http() {  # port: bounded wait until GET /small answers
    local i
    for i in $(seq 100); do
        curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$1/small" && return 0
        sleep 0.1
    done
    echo "error: nothing answers on 127.0.0.1:$1" >&2; return 1
}
start_nginx backend1 "$P_B1"
start_nginx backend2 "$P_B2"
wait_http "$P_B1"; wait_http "$P_B2"

# ---- balancers ---------------------------------------------------------------------------
# Both ways at one thread and at one per core: penha (`threads 1` and its default),
# HAProxy (nbthread 1 and nbthread = cores); pen is single-threaded.
CORES=$(nproc)
BALANCERS=(penha-t1 penha)
need pen && BALANCERS+=(pen) || echo "note: pen not found; skipped" >&2
need haproxy && BALANCERS+=(haproxy-t1 haproxy) || echo "note: haproxy not found; skipped" >&2
BALANCERS+=(nginx-direct)
threads_of() {  # balancer: its thread count as run here
    case "$1" in
        penha-t1|haproxy-t1|pen) echo 1 ;;
        penha|haproxy) echo "$CORES" ;;
        *) echo - ;;
    esac
}

LB_PID=""
start_balancer() {  # name; sets LB_PID and LB_PORT
    local b=$1
    LB_PORT=$P_LB
    case "$b" in
        penha|penha-t1)
            # -r no client tracking (round robin), -x 0 no connection limit, -c client table;
            # threads 0 is the default, one engine thread per core.
            local threads=0
            [ "$b" = penha-t1 ] && threads=1
            "$PENHA" -f -r -x 0 -c 40000 -O tcp_nodelay -O "threads $threads" \
                "127.0.0.1:$P_LB" "127.0.0.1:$P_B1" "127.0.0.1:$P_B2" >"$TMP/$b.log" 2>&1 &
            LB_PID=$! ;;
        pen)
            # pen 0.34: -r no tracking (round robin), -x max simultaneous connections,
            # -c client table size; tcp_nodelay as a penctl option.
            pen -f -r -x $((NOFILE / 2)) -c 40000 -O tcp_nodelay \
                "127.0.0.1:$P_LB" "127.0.0.1:$P_B1" "127.0.0.1:$P_B2" >"$TMP/pen.log" 2>&1 &
            LB_PID=$! ;;
        haproxy|haproxy-t1)
            # TCP mode like pen and penha.
            cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread $(threads_of "$b")
    maxconn $((NOFILE / 2 - 100))
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fe
    bind 127.0.0.1:$P_LB
    default_backend be
backend be
    balance roundrobin
    server b1 127.0.0.1:$P_B1
    server b2 127.0.0.1:$P_B2
EOF
            haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/$b.log" 2>&1 &
            LB_PID=$! ;;
        nginx-direct)
            LB_PID=""; LB_PORT=$P_B1; return 0 ;;
    esac
    PIDS+=("$LB_PID")
    wait_http "$LB_PORT" || { cat "$TMP/$b.log" >&2; return 1; }
}
stop_balancer() {
    [ -n "$LB_PID" ] && stop_pid "$LB_PID"
    LB_PID=""
    sleep 0.5
}

record() { echo "$1 $2 $3 $4" >>"$RESULTS"; }  # balancer round metric value

cpu_ms_per_100k() {  # ticks_before ticks_after requests
    python3 -c "import os,sys; t=os.sysconf('SC_CLK_TCK'); b,a,n=map(int,sys.argv[1:]); print((a-b)*1000/t*100000/n if n else float('nan'))" "$@"
}

run_wrk() {  # balancer round kind: ka | close | bulk
    local b=$1 r=$2 kind=$3 out=$TMP/wrk.$1.$2.$3 t0=0 t1=0 url="http://127.0.0.1:$LB_PORT/small"
    local args=(-t2 -c50 -d"${DURATION}s" --timeout 5s --latency)
    case "$kind" in
        close) args+=(-H "Connection: close") ;;
        bulk) args=(-t2 -c4 -d"${DURATION}s" --timeout 10s); url="http://127.0.0.1:$LB_PORT/big" ;;
    esac
    [ -n "$LB_PID" ] && t0=$($LIB cputicks "$LB_PID")
    timeout $((DURATION + 30)) wrk "${args[@]}" "$url" >"$out" 2>&1 || true
    [ -n "$LB_PID" ] && t1=$($LIB cputicks "$LB_PID")
    local rps p99 n mbs
    read -r rps p99 n mbs <<<"$($LIB wrk "$out")"
    case "$kind" in
        ka|close)
            record "$b" "$r" "${kind}_rps" "$rps"
            record "$b" "$r" "${kind}_p99_ms" "$p99"
            [ -n "$LB_PID" ] && record "$b" "$r" "${kind}_cpu_ms_100k" "$(cpu_ms_per_100k "$t0" "$t1" "$n")"
            printf '  %-13s %-5s %10.0f req/s  p99 %7.2f ms\n' "$b" "$kind" "$rps" "$p99" >&2 ;;
        bulk)
            record "$b" "$r" bulk_mbs "$mbs"
            printf '  %-13s %-5s %10.1f MiB/s\n' "$b" "$kind" "$mbs" >&2 ;;
    esac
}

run_idle() {  # balancer round
    local b=$1 r=$2 before after opened added
    read -r before after opened added <<<"$(timeout 120 $LIB idle "$LB_PORT" "$IDLE" "$LB_PID")"
    if [ "$opened" -gt 0 ]; then
        record "$b" "$r" idle_kib_per_conn "$(python3 -c "print(($after-$before)/$opened)")"
        record "$b" "$r" idle_rss_mib "$(python3 -c "print($after/1024)")"
    fi
    printf '  %-13s idle  %d conns (fds +%d): RSS %d -> %d KiB\n' "$b" "$opened" "$added" "$before" "$after" >&2
    sleep 1  # let the balancer close them all before the next load
}

echo "penha: $PENHA ($PENHA_BUILD)" >&2
echo "ports: backends $P_B1 $P_B2, balancer $P_LB; rounds $ROUNDS, ${DURATION}s loads, $IDLE idle conns" >&2
n=${#BALANCERS[@]}
for r in $(seq 1 "$ROUNDS"); do
    # Rotate the order each round so no balancer always runs first (or last).
    order=()
    for i in $(seq 0 $((n - 1))); do order+=("${BALANCERS[$(( (i + r - 1) % n ))]}"); done
    echo "round $r: ${order[*]}" >&2
    for b in "${order[@]}"; do
        start_balancer "$b"
        [ -n "$LB_PID" ] && run_idle "$b" "$r"
        run_wrk "$b" "$r" ka
        run_wrk "$b" "$r" close
        run_wrk "$b" "$r" bulk
        stop_balancer
    done
done

echo
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
echo "penha ($PENHA_BUILD), pen $(ver pen), haproxy $(ver haproxy), nginx $(ver nginx), wrk $(ver wrk)"
echo "nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "$ROUNDS round(s), ${DURATION}s per load, wrk -t2 -c50 (bulk: -c4 on 64 MiB), $IDLE idle conns"
echo "nginx-direct = wrk straight to one backend (one nginx worker): the ceiling, not a balancer"
echo "threads: $(for b in "${BALANCERS[@]}"; do printf '%s %s, ' "$b" "$(threads_of "$b")"; done | sed 's/, $//')"
echo
$LIB report "$RESULTS"
[ -n "$RAW" ] && cp "$RESULTS" "$RAW"
exit 0
