"""CPU and memory of the stack's processes, read from /proc (no extra dependency).

Each daemon runs in its own process group (fleetflow/stack/process.py), so a service's
cost is the sum over its group: the Flink TaskManager's embedded Python is inside its JVM.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    cpu_s: float
    rss_bytes: int


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                pids.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return pids


def _pid_sample(pid: int) -> Sample:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        # utime, stime are fields 14 and 15 of stat (1-based), i.e. 11 and 12 after the comm.
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rss = int(fields[21]) * PAGE
        return Sample(cpu, rss)
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return Sample(0.0, 0)


def sample_group(pid: int) -> Sample:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return Sample(0.0, 0)
    samples = [_pid_sample(p) for p in _group_pids(pgid)]
    return Sample(sum(s.cpu_s for s in samples), sum(s.rss_bytes for s in samples))


def stack_pids(run_dir: Path) -> dict[str, int]:
    """Service name -> pid, from the stack's pid files (only the daemons fleetflow started)."""
    out = {}
    taskmanagers = sorted(f.stem for f in run_dir.glob("flink-taskmanager*.pid"))
    for name in ("kafka", "cassandra", "redis", "flink-jobmanager", *taskmanagers, "api"):
        f = run_dir / f"{name}.pid"
        if f.exists():
            try:
                pid = int(f.read_text().strip())
                os.kill(pid, 0)
                out[name] = pid
            except (ValueError, ProcessLookupError, PermissionError):
                continue
    return out
