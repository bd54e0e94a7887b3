"""udfs/ must stay importable and testable without a Flink runtime or a clock."""
import ast
from pathlib import Path

UDFS = Path(__file__).resolve().parents[2] / "udfs"
FORBIDDEN_MODULES = {"pyflink", "time", "datetime", "os", "random", "kafka", "redis", "cassandra"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_udfs_import_no_runtime_clock_or_io_modules():
    offenders = {
        f"{p.relative_to(UDFS)}: {mod}"
        for p in UDFS.rglob("*.py")
        for mod in _imports(p)
        if mod in FORBIDDEN_MODULES
    }
    assert not offenders, f"udfs/ must be pure; found {sorted(offenders)}"


def test_purity_scan_sees_files():
    assert any(UDFS.rglob("*.py"))
