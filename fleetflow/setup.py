"""``fleetflow setup``: fetch the JVM parts with Maven and Redis from Debian, once.

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


def ensure_redis(progress=print) -> bool:
    if shutil.which("redis-server"):
        return False
    apt = shutil.which("apt-get")
    if apt is None:
        raise StackError("redis-server is missing and apt-get is not available: install Redis 7 yourself")
    progress("installing Debian's redis-server")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "redis-server"]):
        out = subprocess.run(argv, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    # Debian starts a system redis on 6379; ours must own that port.
    subprocess.run(["service", "redis-server", "stop"], capture_output=True)
    return True


def setup(s: StackSettings, progress=print) -> None:
    if shutil.which("java") is None:
        raise StackError("java not found: install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)")
    ensure_redis(progress)
    fetch_jars(s, progress)
