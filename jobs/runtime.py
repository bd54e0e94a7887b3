"""How the embedded (thread-mode) Python finds FleetFlow and its dependencies.

In thread mode the TaskManager JVM embeds CPython through pemja. That interpreter starts
from the base installation, not from the virtualenv, so it would not see the venv's
site-packages (pemja itself included) nor this project. ``python.pythonpath`` puts both
on its path.
"""
from __future__ import annotations

import site
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python_path() -> str:
    paths = [str(ROOT)] + [p for p in site.getsitepackages() if p.startswith(sys.prefix)]
    return ":".join(dict.fromkeys(paths))
