"""The layers of ARCHITECTURE.md, held by tests: what the core may import, and where settings
are read and long-lived objects built (the composition roots, nowhere else)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import REPO_ROOT

CORE = REPO_ROOT / "shared"
ADAPTERS = REPO_ROOT / "functions"
# Packages the core must never pull in, directly or through what it imports.
FORBIDDEN_IN_CORE = ("azure", "azurefunctions", "fastapi", "starlette", "uvicorn", "functions",
                     "local", "loadtests", "bench", "model", "tests")
# Calls that build what a process holds for its lifetime: only composition roots make them.
ROOT_CALLS = {"from_env", "ModelRegistry", "load_model", "load_spec", "create_app",
              "blob_service"}
# The entry points of shared/ and functions/: the command line's root.
ENTRY_POINTS = {CORE / "__main__.py"}


def core_modules() -> list[str]:
    return sorted(f"shared.{path.stem}" for path in CORE.glob("*.py")
                  if path.stem not in ("__init__", "__main__"))


def test_the_core_imports_no_framework_and_no_outer_layer():
    """Every core module imported in a fresh interpreter: none of them brings Azure, FastAPI,
    the adapters, the local stand-ins or the tools."""
    code = ("import json, sys\n"
            f"for name in {core_modules()!r}:\n"
            "    __import__(name)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    loaded = set(json.loads(done.stdout))
    assert "shared" in loaded
    assert not loaded & set(FORBIDDEN_IN_CORE), loaded & set(FORBIDDEN_IN_CORE)


def where(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else path.name


def module_level_calls(path: Path) -> list[str]:
    """Names of ROOT_CALLS made at module level (outside any function or class body)."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
            if name in ROOT_CALLS:
                found.append(f"{where(path)}:{call.lineno} {name}")
    return found


def all_calls(path: Path, names: set[str]) -> list[str]:
    found = []
    for call in (n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(n, ast.Call)):
        name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
        if name in names:
            found.append(f"{where(path)}:{call.lineno} {name}")
    return found


@pytest.mark.parametrize("folder", [CORE, ADAPTERS], ids=["shared", "functions"])
def test_no_module_level_settings_model_or_client(folder):
    """The core and the adapters hold no module-level settings, model, app or client: the
    entry points build them and pass them down."""
    found = [hit for path in sorted(folder.glob("*.py")) for hit in module_level_calls(path)]
    assert found == []


@pytest.mark.parametrize("folder", [CORE, ADAPTERS], ids=["shared", "functions"])
def test_settings_are_read_only_by_entry_points(folder):
    """``Settings.from_env`` is called by the composition roots only (function_app.py,
    local.app, local.serve, the command line, the tools), never deep in the core."""
    found = [hit for path in sorted(folder.glob("*.py")) if path not in ENTRY_POINTS
             for hit in all_calls(path, {"from_env"})]
    assert found == []


@pytest.mark.parametrize("folder", [CORE, ADAPTERS], ids=["shared", "functions"])
def test_no_global_statements(folder):
    found = [f"{where(path)}:{node.lineno}" for path in sorted(folder.glob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Global)]
    assert found == []


def test_the_checks_see_a_module_level_root_call(tmp_path):
    """The scan itself: a module that builds settings at import is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from shared.config import Settings\nSETTINGS = Settings.from_env()\n"
                   "def fine():\n    return Settings.from_env()\n")
    assert module_level_calls(bad) == ["bad.py:2 from_env"]
    assert len(all_calls(bad, {"from_env"})) == 2


def test_only_the_settings_module_reads_the_environment():
    """``shared.config`` parses the environment for the entry points; no other core module
    looks at it (``os.environ``, ``os.getenv``)."""
    found = [f"{where(path)}:{node.lineno}" for path in sorted(CORE.glob("*.py"))
             if path.name != "config.py"
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")]
    assert found == []


# The roots of the processes that classify: Azure's, the local server's workers, the
# local poller's (start_local_batch_stack), the local shard workers' and the command line's.
IMAGE_ROOTS = [REPO_ROOT / "function_app.py", REPO_ROOT / "local" / "app.py",
               REPO_ROOT / "local" / "azurite.py", REPO_ROOT / "local" / "shard_workers.py",
               CORE / "__main__.py"]


@pytest.mark.parametrize("root", IMAGE_ROOTS, ids=lambda path: where(path))
def test_every_process_that_classifies_is_tuned_to_serve(root):
    """Pillow and glibc hand freed memory back to the OS by default, and NumPy's BLAS spins a
    thread a core; each of these processes keeps its memory and one BLAS thread
    (``shared.process_tuning.tune_process``), or its requests page-fault their memory in anew
    every time and a photo costs two cores."""
    assert all_calls(root, {"tune_process"})
