"""``fleetflow setup``: fetch the JVM parts with Maven and the Debian tools, once.

Jars land in ``.fleetflow/jars/<profile>/``. A stamp holding the pom's hash makes the
step a no-op until pom.xml changes.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess

from fleetflow.settings import ROOT, StackSettings
from fleetflow.stack.process import StackError

PROFILES = ("flink", "kafka", "cassandra")


def _pom_hash() -> str:
    return hashlib.sha256((ROOT / "pom.xml").read_bytes()).hexdigest()


def fetch_jars(s: StackSettings, progress=print) -> bool:
    stamp = s.jars / ".pom.sha256"
    if stamp.exists() and stamp.read_text() == _pom_hash() and all(any((s.jars / p).glob("*.jar")) for p in PROFILES):
        return False
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found: install Maven (Debian: apt-get install maven)")
    for profile in PROFILES:
        target = s.jars / profile
        if target.exists():
            shutil.rmtree(target)
        progress(f"fetching {profile} jars with Maven")
        out = subprocess.run([mvn, "-q", "-B", "-f", str(ROOT / "pom.xml"), "-P", profile,
                              f"-Djars.dir={s.jars}", "package"], capture_output=True, text=True)
        if out.returncode != 0:
            raise StackError(f"Maven could not fetch the {profile} jars:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(_pom_hash())
    return True


# Debian packages the stack and the test suite need: command on PATH -> package.
# Debian's own versions are used (bookworm and its security updates); README lists them.
DEBIAN_TOOLS = {
    "redis-server": "redis-server",   # the current-state store
    "chromium": "chromium",           # dispatcher board browser test
    "chromedriver": "chromium-driver",
    "wrk": "wrk",                     # API load generator (bench/)
    "promtool": "prometheus",         # alert rule tests
}
# Services some of those packages start on install; ours must own their ports.
_STOP_AFTER_INSTALL = ("redis-server", "prometheus")


def ensure_debian_tools(progress=print, tools: dict[str, str] | None = None) -> list[str]:
    """apt-get install whatever is missing; returns the packages installed."""
    wanted = DEBIAN_TOOLS if tools is None else tools
    missing = sorted({pkg for cmd, pkg in wanted.items() if shutil.which(cmd) is None})
    if not missing:
        return []
    apt = shutil.which("apt-get")
    if apt is None:
        raise StackError(f"missing {', '.join(missing)} and apt-get is not available: install them yourself")
    progress(f"installing Debian packages: {', '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", *missing]):
        out = subprocess.run(argv, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    for service in _STOP_AFTER_INSTALL:
        if service in missing:
            subprocess.run(["service", service, "stop"], capture_output=True)
    return missing


def setup(s: StackSettings, progress=print) -> None:
    if shutil.which("java") is None:
        raise StackError("java not found: install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)")
    ensure_debian_tools(progress)
    fetch_jars(s, progress)
