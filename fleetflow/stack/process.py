"""Start, find and stop the stack's daemons.

Each service runs in its own session (process group) so ``down`` can take the whole
tree with it, and leaves a pid file under ``.fleetflow/run``. Nothing is left behind
if a pid file goes stale: ``alive`` checks the pid really is the command we started.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class StackError(RuntimeError):
    """A service could not be started or stopped. The message names what to read."""


@dataclass(frozen=True)
class Daemon:
    name: str
    pid_file: Path
    log_file: Path
    # Substrings of the process command line that prove the pid is ours (any one will do:
    # a launcher script shows its own name until it execs the JVM).
    signature: tuple[str, ...]

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except FileNotFoundError:
            return None
        if not any(sig in cmdline for sig in self.signature):
            return None
        state = _proc_state(pid)
        return None if state in ("Z", "X") else pid

    def alive(self) -> bool:
        return self.pid() is not None

    def start(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n===== fleetflow starting {self.name} at {time.strftime('%Y-%m-%dT%H:%M:%S')} =====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        # Between fork and exec the child still shows our own command line; give it a moment
        # so that alive() does not mistake a starting service for a dead one.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.pid() is None and proc.poll() is None:
            time.sleep(0.02)
        return proc.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM the process group, then SIGKILL what is left. Returns True if something was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _group_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, what: str, timeout_s: float, daemon: Daemon | None = None,
               interval_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # any failure of the probe just means "not yet"
            last_exc = exc
        if daemon is not None and not daemon.alive():
            raise StackError(f"{daemon.name} exited while starting; read {daemon.log_file}")
        time.sleep(interval_s)
    hint = f"; read {daemon.log_file}" if daemon is not None else ""
    detail = f" (last error: {last_exc})" if last_exc else ""
    raise StackError(f"{what} did not answer within {timeout_s:.0f}s{detail}{hint}")
