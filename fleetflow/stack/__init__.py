"""``fleetflow up | down | status | logs``: the single-node stack on loopback."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fleetflow.settings import StackSettings
from fleetflow.stack.process import StackError, port_open, wait_until
from fleetflow.stack.services import Service, all_services, java_bin

log = logging.getLogger("fleetflow.stack")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    ready: bool
    log_file: str


def _check_ready(svc: Service) -> bool:
    try:
        return bool(svc.ready())
    except Exception:
        return False


def up(s: StackSettings, only: list[str] | None = None, progress=None) -> list[ServiceStatus]:
    """Start every service that is not already running and wait until each really answers.

    Running it again is harmless: a service that is up and answering is left alone.
    """
    java_bin()
    for d in (s.logs, s.run, s.data):
        d.mkdir(parents=True, exist_ok=True)
    services = [svc for svc in all_services(s) if only is None or svc.name in only]
    for svc in services:
        d = svc.daemon
        if d.alive():
            if progress:
                progress(f"{svc.name}: already running (pid {d.pid()})")
            wait_until(lambda: _check_ready(svc), what=svc.name, timeout_s=s.start_timeout_s, daemon=d)
            continue
        taken = [p for p in svc.ports() if port_open(s.host, p)]
        if taken:
            raise StackError(
                f"cannot start {svc.name}: port(s) {taken} on {s.host} already in use by another process "
                f"(not started by fleetflow; see `ss -ltnp`). Stop it or set FLEETFLOW_*_PORT.")
        if progress:
            progress(f"{svc.name}: starting (log {d.log_file})")
        svc.prepare()
        d.start(svc.argv(), env=svc.env())
        t0 = time.monotonic()
        wait_until(lambda: _check_ready(svc), what=svc.name, timeout_s=s.start_timeout_s, daemon=d)
        if progress:
            progress(f"{svc.name}: ready in {time.monotonic() - t0:.1f}s")
    return status(s)


def down(s: StackSettings, progress=None) -> list[str]:
    """Stop everything fleetflow started, Flink first so jobs stop before their sinks."""
    stopped = []
    for svc in reversed(all_services(s)):
        if svc.daemon.stop():
            stopped.append(svc.name)
            if progress:
                progress(f"{svc.name}: stopped")
    for extra in sorted(s.run.glob("*.pid")) if s.run.exists() else []:
        # Processes fleetflow started besides the stack (the demo's API and simulator).
        from fleetflow.stack.process import Daemon
        d = Daemon(extra.stem, extra, s.logs / f"{extra.stem}.log", ("fleetflow", "uvicorn", "python"))
        if d.stop():
            stopped.append(extra.stem)
            if progress:
                progress(f"{extra.stem}: stopped")
    return stopped


def status(s: StackSettings) -> list[ServiceStatus]:
    out = []
    for svc in all_services(s):
        pid = svc.daemon.pid()
        out.append(ServiceStatus(svc.name, pid is not None, pid, pid is not None and _check_ready(svc),
                                 str(svc.daemon.log_file)))
    return out


def log_path(s: StackSettings, name: str) -> str:
    p = s.logs / f"{name}.log"
    if not p.exists():
        known = sorted(x.stem for x in s.logs.glob("*.log")) if s.logs.exists() else []
        raise StackError(f"no log for {name!r}; known: {', '.join(known) or 'none yet (run fleetflow up)'}")
    return str(p)


def is_up(s: StackSettings) -> bool:
    return all(st.ready for st in status(s))


__all__ = ["up", "down", "status", "log_path", "is_up", "StackError"]
