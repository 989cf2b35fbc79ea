#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

Subcommands:
  freeports N                 print N distinct free TCP ports on 127.0.0.1 (ephemeral range)
  cputicks PID                print utime+stime of a process (all threads), in clock ticks
  idle PORT COUNT PID         open COUNT idle connections to 127.0.0.1:PORT, wait until the
                              balancer PID holds about 2*COUNT more fds (client side + backend
                              side), print "before_kib after_kib opened fds_added", close all
  wrk FILE                    parse wrk output: print "rps p99_ms requests mb_per_s"
  report TSV                  print the min/median/max table and the penha ratios
"""
import os
import socket
import statistics
import sys
import time


def freeports(n):
    socks, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))  # the kernel picks from ip_local_port_range
        if s.getsockname()[1] not in ports:
            ports.append(s.getsockname()[1])
        socks.append(s)
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


def cputicks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


def fdcount(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle(port, count, pid):
    time.sleep(0.5)
    before = vmrss_kib(pid)
    fds_before = fdcount(pid)
    conns = []
    deadline = time.monotonic() + 60
    # Connect in batches so the balancer's accept backlog (and ours) never overflows.
    while len(conns) < count and time.monotonic() < deadline:
        for _ in range(min(200, count - len(conns))):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError as e:
                print(f"idle: connect failed after {len(conns)}: {e}", file=sys.stderr)
                s.close()
                deadline = 0
                break
            conns.append(s)
        time.sleep(0.01)
    # Wait (bounded) until the balancer has accepted and dialled a backend for each one.
    target = fds_before + 2 * len(conns)
    wait_until = time.monotonic() + 20
    while fdcount(pid) < target and time.monotonic() < wait_until:
        time.sleep(0.2)
    time.sleep(1.0)  # let allocations settle
    after = vmrss_kib(pid)
    added = fdcount(pid) - fds_before
    print(before, after, len(conns), added)
    for s in conns:
        s.close()


def to_ms(text):
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    for u in ("us", "ms", "s", "m"):
        if text.endswith(u):
            return float(text[: -len(u)]) * units[u]
    return float(text)


def to_mb(text):
    # wrk prints Transfer/sec as e.g. 1.23GB, 456.7MB, 12.3KB (binary units).
    units = {"GB": 1024.0, "MB": 1.0, "KB": 1 / 1024.0, "B": 1 / 1048576.0}
    for u in ("GB", "MB", "KB", "B"):
        if text.endswith(u):
            return float(text[: -len(u)]) * units[u]
    return float(text)


def wrk(path):
    rps = p99 = mbs = float("nan")
    requests = 0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if line.startswith("Requests/sec:"):
                rps = float(parts[1])
            elif line.startswith("Transfer/sec:"):
                mbs = to_mb(parts[1])
            elif len(parts) == 2 and parts[0] == "99%":
                p99 = to_ms(parts[1])
            elif "requests in" in line:
                requests = int(parts[0])
            elif "Socket errors" in line or "Non-2xx" in line:
                print(f"wrk {path}: {line.strip()}", file=sys.stderr)
    print(rps, p99, requests, mbs)


# metric key -> (label, higher is better)
METRICS = [
    ("ka_rps", "keep-alive req/s", True),
    ("ka_p99_ms", "keep-alive p99 ms", False),
    ("close_rps", "conn-per-request req/s", True),
    ("close_p99_ms", "conn-per-request p99 ms", False),
    ("bulk_mbs", "bulk MiB/s", True),
    ("idle_kib_per_conn", "KiB per idle conn", False),
    ("idle_rss_mib", "RSS MiB w/ idle conns", False),
    ("ka_cpu_ms_100k", "CPU ms/100k keep-alive", False),
    ("close_cpu_ms_100k", "CPU ms/100k conn-per-req", False),
]
ORDER = ["penha-t1", "penha", "pen", "haproxy-t1", "haproxy", "nginx-direct"]
# Each penha run against the peers at the same thread count (pen has one).
PAIRS = [("penha-t1", "pen"), ("penha-t1", "haproxy-t1"), ("penha", "pen"), ("penha", "haproxy")]


def fmt(v):
    if v != v:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def report(path):
    data = {}  # (balancer, metric) -> {round: value}
    with open(path) as f:
        for line in f:
            b, r, m, v = line.split()
            data.setdefault((b, m), {})[int(r)] = float(v)
    balancers = [b for b in ORDER if any(k[0] == b for k in data)]
    print("min / median / max over rounds")
    print(f"{'metric':26}" + "".join(f"{b:>24}" for b in balancers))
    for key, label, _ in METRICS:
        row = f"{label:26}"
        for b in balancers:
            vals = [v for v in data.get((b, key), {}).values() if v == v]
            cell = "/".join(fmt(x) for x in (min(vals), statistics.median(vals), max(vals))) if vals else "-"
            row += f"{cell:>24}"
        print(row)
    print()
    print("ratios penha/X: median of per-round ratios (min-max); >1 is better for penha where")
    print("higher is better (req/s, MiB/s); <1 is better for p99, memory and CPU")
    pairs = [(m, o) for m, o in PAIRS if m in balancers and o in balancers]
    print(f"{'metric':26}" + "".join(f"{m + '/' + o:>24}" for m, o in pairs))
    for key, label, _ in METRICS:
        row = f"{label:26}"
        for mine, o in pairs:
            p, q = data.get((mine, key), {}), data.get((o, key), {})
            rounds = [r for r in p if r in q and p[r] == p[r] and q[r] == q[r]]
            ratios = [p[r] / q[r] for r in rounds if abs(q[r]) > 0.01 * abs(p[r])]
            if ratios:
                cell = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            else:  # e.g. pen preallocates, so its per-connection growth is ~0
                cell = f"n/a ({o} ~0)" if rounds else "-"
            row += f"{cell:>24}"
        print(row)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "freeports":
        freeports(int(args[0]))
    elif cmd == "cputicks":
        print(cputicks(int(args[0])))
    elif cmd == "idle":
        idle(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == "wrk":
        wrk(args[0])
    elif cmd == "report":
        report(args[0])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
