"""Structured (JSON lines) logs for the fleetflow command, plus readable console output."""
from __future__ import annotations

import json
import logging

from fleetflow.settings import StackSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts_ms": int(record.created * 1000), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        extra = getattr(record, "fields", None)
        if extra:
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(s: StackSettings) -> None:
    s.logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(s.logs / "fleetflow-cli.jsonl")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("fleetflow")
    root.setLevel(logging.INFO)
    root.handlers[:] = [handler]
    root.propagate = False
