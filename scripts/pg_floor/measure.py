"""Runs pgbench with each workload at each concurrency against a PostgreSQL cluster and prints
sign-ins per second with the CPU per sign-in of PostgreSQL (every process of the cluster) and
of pgbench (the client). A workload is a pgbench script, or `SCRIPT:N` to run it with
`-D size=N` and count N sign-ins for each of its transactions. Used by scripts/pg_floor.sh."""
import os
import re
import resource
import subprocess
import sys
import time

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        # the fields after the command name, which may hold spaces, start at field 3
        return f.read().rsplit(")", 1)[1].split()


def children(postmaster):
    """The postmaster's live children, with the CPU ticks (user and system) of each."""
    ticks = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                f = stat(entry)
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(f[1]) == postmaster:
                ticks[int(entry)] = int(f[11]) + int(f[12])
    return ticks


def cluster_ticks(postmaster):
    """CPU ticks of the postmaster, its live children, and its children that have exited."""
    own = sum(int(x) for x in stat(postmaster)[11:15])  # utime, stime, cutime, cstime
    return own + sum(children(postmaster).values())


def main():
    pgbench, url_args, postmaster, seconds, clients, workloads = (
        sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4],
        [int(c) for c in sys.argv[5].split(",")], sys.argv[6:])
    print(f"{'workload':<16} {'clients':>7} {'sign-ins/s':>10} {'pg cpu ms':>9} "
          f"{'pgbench ms':>10} {'failed':>6}")
    for workload in workloads:
        script, _, size = workload.partition(":")
        per = int(size or 1)
        name = os.path.basename(script).removesuffix(".sql") + (f" x{per}" if size else "")
        for c in clients:
            resident = set(children(postmaster))
            before = cluster_ticks(postmaster)
            own = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(
                [pgbench, *url_args, "-n", "-M", "prepared", "-c", str(c), "-j", "2", "-T",
                 seconds, "-D", f"size={per}", "-f", script], capture_output=True, text=True)
            # pgbench's backends end after it does: count them once the postmaster has reaped
            # them (their CPU is then in its cutime and cstime)
            for _ in range(500):
                if set(children(postmaster)) <= resident:
                    break
                time.sleep(0.01)
            after = cluster_ticks(postmaster)
            done = resource.getrusage(resource.RUSAGE_CHILDREN)
            processed = re.search(r"actually processed: (\d+)", out.stdout)
            tps = re.search(r"tps = ([\d.]+)", out.stdout)
            failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
            if out.returncode != 0 or not processed or int(processed.group(1)) == 0:
                sys.exit(f"pgbench failed on {script}:\n{out.stdout}{out.stderr}")
            n = int(processed.group(1)) * per
            pg_ms = (after - before) * TICK_MS / n
            client_ms = ((done.ru_utime + done.ru_stime) - (own.ru_utime + own.ru_stime)) * 1000 / n
            print(f"{name:<16} {c:>7} {float(tps.group(1)) * per:>10.0f} {pg_ms:>9.3f} "
                  f"{client_ms:>10.3f} {failed.group(1) if failed else '0':>6}", flush=True)


main()
