"""How many jobs a sweep runs at once on this machine, and how far along a sweep is.

Each job leaves a marker in its output directory when it ends (done, failed or skipped by
resume, and its seconds); the launching process counts the markers under the sweep directory,
so the same works for joblib's worker processes and for submitit's jobs on other nodes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

MARKER = ".job_status.json"  # in a job's output directory, written when the job ends


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def memory_gib() -> float:
    """This machine's total memory (the same answer in every process of a sweep)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return math.inf


def parallel_jobs(n_jobs: int, job_memory_gib: float, parent_gib: float = 1.0) -> int:
    """Jobs at once: `n_jobs` if > 0 (never more than the cores), -1 one per core, 0 as many as
    both the cores and the memory allow (each job `job_memory_gib`, the launching process
    `parent_gib`)."""
    n = cores()
    if n_jobs > 0:
        return min(n_jobs, n)
    if n_jobs < 0:
        return max(1, n + 1 + n_jobs)
    if job_memory_gib <= 0:
        return n
    fit = int((memory_gib() - parent_gib) // job_memory_gib)
    return max(1, min(n, fit))


def mark_job(output_dir: str | Path, status: str, seconds: float) -> None:
    """Leave the job's end for the launching process: status done, failed or skipped."""
    path = Path(output_dir) / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"status": status, "seconds": seconds}))
    tmp.replace(path)


def _clock(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def progress_line(total: int, ended: list[dict], elapsed: float, parallel: int) -> str:
    """'12/30 done, 1 failed, elapsed 6 min, about 9 min left': done counts every ended job
    (skipped ones too); the time left is the mean seconds of the jobs that ran times the jobs
    left, shared over the jobs that run at once."""
    done = len(ended)
    failed = sum(e["status"] == "failed" for e in ended)
    ran = [e["seconds"] for e in ended if e["status"] != "skipped"]
    line = f"{done}/{total} done, {failed} failed, elapsed {_clock(elapsed)}"
    if done == total:
        return line
    if not ran:
        return f"{line}, time left not known yet"
    left = sum(ran) / len(ran) * (total - done) / max(1, min(parallel, total - done))
    return f"{line}, about {_clock(left)} left"


class Watcher:
    """In the launching process: every `every` seconds, count the markers under the sweep
    directory and report progress, as one updating line in a terminal, else a log line each
    time a job ends."""

    def __init__(
        self,
        sweep_dir: str | Path,
        total: int,
        parallel: int,
        every: float = 2.0,
        stream: TextIO | None = None,
    ) -> None:
        self.sweep_dir, self.total, self.parallel, self.every = Path(sweep_dir), total, parallel, every
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.seen: dict[Path, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.logged = False  # a line was reported

    def __enter__(self) -> Watcher:
        for old in self.sweep_dir.rglob(MARKER):  # a launch into the same directory before
            old.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll(final=True)

    def poll(self, final: bool = False) -> None:
        new = False
        for path in self.sweep_dir.rglob(MARKER):
            if path not in self.seen:
                try:
                    self.seen[path] = json.loads(path.read_text())
                    new = True
                except (OSError, ValueError):
                    continue  # being written: next time
        ended = list(self.seen.values())
        line = progress_line(self.total, ended, time.monotonic() - self.start, self.parallel)
        if self.stream.isatty():
            self.stream.write(f"\r\033[K{line}" + ("\n" if final else ""))
            self.stream.flush()
        elif new or (final and not self.logged):
            log.info("%s", line)
        self.logged = self.logged or new or final

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()
