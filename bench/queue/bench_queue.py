#!/usr/bin/python3
"""The job queue (issue 15): enqueue-to-start latency and throughput of the trivial job type
`probe` ({"steps": 1}: one progress report, then done; the worker clamps steps to 1..1000,
so 1 is its "do nothing"), on SQLite and on PostgreSQL, with 1, 2 and 4 workers, on loopback.

Topology per row (a fresh data directory, and on PostgreSQL a fresh database, each):
- SQLite: one `sfa serve --no-jobs` (the API) beside ONE `sfa worker --types probe
  --concurrency N`. SQLite allows only one process that runs jobs (at start it takes back
  every job left running, README "Several nodes"), so "N workers" there means N job slots of
  one worker process, each running jobs in its own `sfa job-exec` child as everywhere.
- PostgreSQL: a private cluster (tests/with-postgres.sh, as test_multinode.py; the script
  re-runs itself under it), one `sfa serve --no-jobs` and N `sfa worker --types probe
  --concurrency 1` processes.

Measures:
1. Enqueue-to-start latency: LATENCY jobs enqueued one at a time with `sfa job enqueue` on an
   idle system (each waits for the previous one to complete, then for a random 0-200 ms, so
   enqueues fall at random phases of the schedulers' 200 ms tick). Latency runs from the
   moment the `sfa job enqueue` process has exited (the "enqueue returns") to:
   - "log": the worker's log line "job <id> (probe) started", which the scheduler writes
     just after it claimed the row (status "running") and spawned the job's process. A
     thread blocked on the worker's stderr pipe stamps each line with time.monotonic() as it
     arrives (the job rows' started_at has 1 s resolution, the log's own time too, so
     neither is used). Resolution: well under 1 ms on an idle machine (a pipe wake-up; the
     interpreter's thread switch interval is set to 0.5 ms); on a busy machine the reader
     thread's scheduling delay adds to it.
   - "poll": GET /api/jobs/:id on the API node every 2 ms (one keep-alive connection) until
     its status leaves "queued"; resolution 2 ms plus one request's round trip (printed).
   - on PostgreSQL also from the enqueue's NOTIFY ("queued probe" on sfa_jobs, which the
     enqueue sends in its transaction) as a listener connection of this script receives it,
     i.e. from the commit as the workers learn of it, to the "started" log line; both ends
     stamped by this script's reader threads (sub-millisecond when idle).
   A job can start before its `sfa job enqueue` process has exited (the row is committed and
   the note sent before the process closes its database and exits): such latencies are
   negative and are kept as they are, and counted. On PostgreSQL that is the common case,
   which is why the NOTIFY column exists; SQLite has no cross-process note (the worker
   finds the row by polling the table every 200 ms), so there the enqueue's return is the
   reference.
2. Throughput: the workers are stopped, BATCH jobs are enqueued (8 `sfa job enqueue` at a
   time), then the workers are started again together; jobs/min = BATCH / (the last
   "completed" log line - the first "started" log line) * 60, stamped as above.
Worker peak RSS is VmHWM of the `sfa worker` processes (the largest of them; their short-lived
`sfa job-exec` children are not included).

Prints the load average at start and end (the figures are only comparable on a quiet
machine), a Markdown table, and per row the enqueue command's own time, the early starts and
the latency outliers with their job ids.

Usage: /usr/bin/python3 bench/queue/bench_queue.py [--latency N] [--batch N]
       [--workers 1,2,4] [--backends sqlite,pg]
(from the repository root after `make build`; SFA_BIN overrides build/sfa; PostgreSQL needs
Debian's postgresql package, without it only SQLite is measured and the output says so).
"""
import argparse
import glob
import math
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import Server, Worker, peak_rss_kb  # noqa: E402

PAYLOAD = '{"steps": 1}'
EMAIL = "queue@example.com"
ENV = {
    "SFA_SECRET_KEY_BASE": "bench-queue-" + "0123456789abcdef" * 3,
    "SFA_RATE_API": "1000000",
    "SFA_RATE_HEAVY": "1000000",
    "SFA_ACCESS_LOG": "errors",
    "SFA_JOB_RETRY_BASE_S": "0",
}
LINE = re.compile(r"job ([0-9a-f-]{36}) \(probe\) (started|completed|failed)")


class Events:
    """When each job's "started" / "completed" / "failed" log line arrived (monotonic s)."""

    def __init__(self):
        self.at = {}
        self.cond = threading.Condition()

    def note(self, line, t):
        m = LINE.search(line)
        if m:
            with self.cond:
                self.at.setdefault((m.group(1), m.group(2)), t)
                self.cond.notify_all()

    def wait(self, keys, timeout):
        """Waits until every (id, kind) in keys is seen (a "failed" counts for "completed");
        returns the ones still missing."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                missing = [k for k in keys if k not in self.at and
                           not (k[1] == "completed" and (k[0], "failed") in self.at)]
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self.cond.wait(min(left, 1.0))


class Notes:
    """PostgreSQL: stamps each "queued probe" note on the jobs channel (sfa_jobs) as a
    listener of its own receives it, which is when the enqueue's transaction committed as
    the workers see it (they listen on the same channel)."""

    def __init__(self, url):
        import psycopg2  # Debian's python3-psycopg2 (scripts/deps.sh), PostgreSQL rows only
        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True
        self.conn.cursor().execute("LISTEN sfa_jobs")
        self.times = []
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done:
            if select.select([self.conn], [], [], 0.2)[0]:
                self.conn.poll()
                t = time.monotonic()
                while self.conn.notifies:
                    if self.conn.notifies.pop(0).payload.startswith("queued probe"):
                        self.times.append(t)

    def first_after(self, t0):
        return next((t for t in self.times if t >= t0), None)

    def close(self):
        self.done = True
        self.thread.join()
        self.conn.close()


class StampedLog(list):
    """A process's log (harness.Server.log) that stamps each line as the reader gets it."""

    def __init__(self, events):
        super().__init__()
        self.events = events

    def append(self, line):
        t = time.monotonic()
        super().append(line)
        self.events.note(line, t)


class TimedWorker(Worker):
    def __init__(self, events, **kw):
        super().__init__(**kw)
        self.log = StampedLog(events)


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def find_initdb():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    return shutil.which("initdb")


def pg_url(name):
    host = os.environ["SFA_TEST_PG_HOST"]
    subprocess.run([shutil.which("psql") or "psql", "-h", host, "-U", "sfa", "-d", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"],
                   capture_output=True, check=True)
    return f"postgresql://sfa@/{name}?host={host}"


class Row:
    """One backend with n workers: its processes and its measurements."""

    def __init__(self, backend, n):
        self.backend, self.n = backend, n
        self.data = tempfile.mkdtemp(prefix=f"sfa-bench-queue-{backend}{n}-")
        self.env = dict(ENV)
        if backend == "pg":
            self.env["SFA_DATABASE_URL"] = pg_url(f"bench_queue_{n}_{os.getpid()}")
        self.events = Events()
        self.api = None
        self.workers = []
        self.rss_kb = 0
        self.notes = []
        self.listener = Notes(self.env["SFA_DATABASE_URL"]) if backend == "pg" else None

    def start_workers(self):
        if self.backend == "sqlite":
            specs = [["--types", "probe", "--concurrency", str(self.n)]]
        else:
            specs = [["--types", "probe", "--concurrency", "1"]] * self.n
        ws = [TimedWorker(self.events, data_dir=self.data, env=self.env, args=a) for a in specs]
        with ThreadPoolExecutor(len(ws)) as ex:  # together: none gets a head start
            list(ex.map(lambda w: w.start(), ws))
        self.workers = ws

    def stop_workers(self):
        for w in self.workers:
            if w.proc.poll() is None:
                self.rss_kb = max(self.rss_kb, peak_rss_kb(w.proc.pid))
            w.stop()
        self.workers = []

    def start(self):
        self.api = Server(data_dir=self.data, env=self.env, args=["--no-jobs"]).start()
        r = self.api.cli("user", "create", "--email", EMAIL, "--password", "bench password 1")
        if r.returncode:
            raise SystemExit(f"user create failed: {r.stderr}")
        key = self.api.cli("token", "create", "--email", EMAIL).stdout.strip()
        self.auth = {"Authorization": f"Bearer {key}"}
        self.start_workers()

    def stop(self):
        self.stop_workers()
        if self.api:
            self.api.stop()
        if self.listener:
            self.listener.close()
        shutil.rmtree(self.data, ignore_errors=True)

    def enqueue(self):
        t0 = time.monotonic()
        r = self.api.cli("job", "enqueue", "--email", EMAIL, "--type", "probe", "--payload",
                         PAYLOAD)
        t1 = time.monotonic()
        if r.returncode:
            raise SystemExit(f"sfa job enqueue failed: {r.stderr}")
        return r.stdout.strip(), t0, t1

    def latency(self, count):
        c = self.api.client()
        self.lat_log, self.lat_poll, self.cli_s, self.rtt = [], [], [], []
        self.lat_ids, self.lat_note = [], []
        for _ in range(count):
            jid, t0, t1 = self.enqueue()
            self.cli_s.append(t1 - t0)
            seen = None
            while seen is None:
                a = time.monotonic()
                r = c.get(f"/api/jobs/{jid}", headers=self.auth)
                b = time.monotonic()
                self.rtt.append(b - a)
                if r.status != 200:
                    raise SystemExit(f"GET /api/jobs/{jid}: {r.status} {r.text}")
                if r.json()["data"]["status"] != "queued":
                    seen = b
                elif b - t1 > 30:
                    raise SystemExit(f"job {jid} still queued after 30 s")
                else:
                    time.sleep(max(0.0, a + 0.002 - time.monotonic()))
            missing = self.events.wait([(jid, "started"), (jid, "completed")], 60)
            if missing:
                raise SystemExit(f"no log line for {missing}")
            self.lat_log.append((self.events.at[(jid, "started")] - t1) * 1000)
            self.lat_poll.append((seen - t1) * 1000)
            self.lat_ids.append(jid)
            if self.listener:
                note = self.listener.first_after(t0)
                if note is None:
                    raise SystemExit(f"no NOTIFY seen for job {jid}")
                self.lat_note.append((self.events.at[(jid, "started")] - note) * 1000)
            time.sleep(random.uniform(0, 0.2))

    def throughput(self, batch):
        self.stop_workers()
        with ThreadPoolExecutor(8) as ex:
            ids = [jid for jid, _, _ in ex.map(lambda _: self.enqueue(), range(batch))]
        self.start_workers()
        keys = [(j, "started") for j in ids] + [(j, "completed") for j in ids]
        missing = self.events.wait(keys, 600)
        if missing:
            raise SystemExit(f"{len(missing)} batch events missing, e.g. {missing[:3]}")
        failed = [j for j in ids if (j, "failed") in self.events.at]
        if failed:
            self.notes.append(f"{len(failed)} of the batch FAILED (counted as finished)")
        first = min(self.events.at[(j, "started")] for j in ids)
        last = max(self.events.at.get((j, "completed"), self.events.at.get((j, "failed")))
                   for j in ids)
        self.window_s = last - first
        self.per_min = batch / self.window_s * 60
        self.run_ms = [(self.events.at[(j, "completed")] - self.events.at[(j, "started")]) * 1000
                       for j in ids if (j, "completed") in self.events.at]


def run_row(backend, n, args):
    row = Row(backend, n)
    try:
        row.start()
        row.latency(args.latency)
        row.throughput(args.batch)
        row.stop_workers()
        return row
    finally:
        row.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=int, default=20, help="jobs for the latency (20)")
    ap.add_argument("--batch", type=int, default=60, help="jobs for the throughput (60)")
    ap.add_argument("--workers", default="1,2,4", help="worker counts (1,2,4)")
    ap.add_argument("--backends", default="sqlite,pg", help="sqlite,pg")
    args = ap.parse_args()
    backends = args.backends.split(",")
    no_pg = None
    if "pg" in backends and not os.environ.get("SFA_TEST_PG_HOST"):
        if find_initdb():
            os.execvp("bash", ["bash", os.path.join(ROOT, "tests", "with-postgres.sh"),
                               sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
        no_pg = ("PostgreSQL was NOT measured: its server programs (initdb, pg_ctl) are not "
                 "installed (apt-get install postgresql)")
        backends.remove("pg")
    sys.setswitchinterval(0.0005)
    random.seed()
    load0 = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average at start {load0[0]:.2f} "
          f"{load0[1]:.2f} {load0[2]:.2f} (1, 5, 15 min); figures compare only on a quiet "
          f"machine")
    print(f"probe {PAYLOAD}; latency over {args.latency} jobs enqueued one at a time, "
          f"throughput over a batch of {args.batch}"
          + (" (p99 is nearest-rank: with fewer than 100 jobs it is the largest)"
             if args.latency < 100 else ""))
    rows = []
    t_all = time.monotonic()
    for backend in backends:
        for n in [int(x) for x in args.workers.split(",")]:
            t = time.monotonic()
            rows.append(run_row(backend, n, args))
            print(f"  {backend} x{n} measured in {time.monotonic() - t:.0f} s", flush=True)
    load1 = os.getloadavg()
    print()
    print("| backend | workers | start latency p50 / p99 ms from the enqueue's return "
          "(log line) | p50 / p99 ms (API poll 2 ms) | p50 / p99 ms from the enqueue's NOTIFY "
          "(log line) | jobs/min | worker peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        workers = (f"1 process, --concurrency {r.n}" if r.backend == "sqlite"
                   else f"{r.n} process{'es' if r.n > 1 else ''}, --concurrency 1")
        print(f"| {'SQLite' if r.backend == 'sqlite' else 'PostgreSQL'} | {workers} | "
              f"{pct(r.lat_log, 50):.1f} / {pct(r.lat_log, 99):.1f} | "
              f"{pct(r.lat_poll, 50):.1f} / {pct(r.lat_poll, 99):.1f} | "
              + (f"{pct(r.lat_note, 50):.1f} / {pct(r.lat_note, 99):.1f}" if r.lat_note else
                 "n/a (SQLite has no cross-process note)")
              + f" | {r.per_min:.0f} | "
              f"{r.rss_kb / 1024:.1f} |")
    print()
    for r in rows:
        early = sum(x < 0 for x in r.lat_log)
        med = pct(r.lat_log, 50)
        outliers = sorted(((x, j) for x, j in zip(r.lat_log, r.lat_ids)
                           if x > max(3 * med, med + 50)), reverse=True)
        print(f"- {r.backend} x{r.n}: `sfa job enqueue` took p50 {pct(r.cli_s, 50) * 1000:.0f} ms; "
              f"API poll round trip p50 {pct(r.rtt, 50) * 1000:.2f} ms; "
              f"latency min {min(r.lat_log):.1f} max {max(r.lat_log):.1f} ms; "
              f"{early} of {len(r.lat_log)} started before their enqueue returned; "
              f"batch window {r.window_s:.2f} s, a job's started-to-completed p50 "
              f"{pct(r.run_ms, 50):.0f} ms p99 {pct(r.run_ms, 99):.0f} ms"
              + ("; latency outliers (> 3x p50 and > p50 + 50 ms): "
                 + ", ".join(f"{x:.0f} ms ({j[:8]})" for x, j in outliers[:5]) if outliers else "")
              + "".join("; " + s for s in r.notes))
    if no_pg:
        print(f"- {no_pg}")
    print(f"\nload average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
          f"whole run {time.monotonic() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
