"""Checkov's Bicep policies over infra/: no parsing error, no failed check, and every skipped
check skipped on purpose, with its reason written next to the resource.

Checkov exits 0 when it cannot parse a file (it reports the file under "parsing_errors" and
checks nothing in it), so the parsing errors are checked explicitly. Checkov lives in its own
virtualenv (.venv/checkov, from infra/checkov-requirements.txt): it pins packaging<24, which the
project's pytest cannot use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from bicep_tree import INFRA, bicep_files

REPO = INFRA.parent
SKIP_COMMENT = re.compile(r"//\s*checkov:skip=(CKV2?_[A-Z]+_\d+):(.+)")


def checkov_executable() -> str | None:
    for candidate in (os.environ.get("CHECKOV"), REPO / ".venv" / "checkov" / "bin" / "checkov",
                      shutil.which("checkov")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def run_checkov(checkov: str, directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [checkov, "--framework", "bicep", "--skip-download", "--directory", str(directory),
         "--output", "json", "--soft-fail"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )


def collect(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    document = json.loads(stdout)
    # One framework gives one report object (several give a list).
    return document[0] if isinstance(document, list) else document


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> tuple[dict, dict]:
    """Checkov over infra/ as it is, and over a copy without the skip comments (to show that
    every skip stands for a check that would fail), run side by side."""
    checkov = checkov_executable()
    if checkov is None:
        pytest.skip("checkov is not installed: python3 -m venv .venv/checkov && "
                    ".venv/checkov/bin/pip install -r infra/checkov-requirements.txt")
    bare = tmp_path_factory.mktemp("infra-without-skips")
    for path in bicep_files():
        copy = bare / path.relative_to(INFRA)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(SKIP_COMMENT.sub("//", path.read_text()))
    as_is, without_skips = run_checkov(checkov, INFRA), run_checkov(checkov, bare)
    return collect(as_is), collect(without_skips)


@pytest.fixture(scope="module")
def report(reports) -> dict:
    return reports[0]


def test_checkov_parsed_every_bicep_file(report):
    assert report["check_type"] == "bicep"
    assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert report["results"].get("parsing_errors", []) == []
    scanned = {Path(c["file_abs_path"]).resolve()
               for kind in ("passed_checks", "failed_checks", "skipped_checks")
               for c in report["results"][kind]}
    # Files with resources that have policies: a file that failed to parse would be missing.
    for name in ("storage.bicep", "function-app.bicep"):
        assert INFRA / "app" / name in scanned
    assert report["summary"]["passed"] > 0


def test_no_failed_check(report):
    failed = [f"{c['check_id']} {c['check_name']} ({c['resource']}, {c['file_path']})"
              for c in report["results"]["failed_checks"]]
    assert failed == []


def declared_skips() -> dict[tuple[str, str], str]:
    """(file name, check id) -> reason, from the inline `// checkov:skip=ID:reason` comments."""
    skips = {}
    for path in bicep_files():
        for match in SKIP_COMMENT.finditer(path.read_text()):
            skips[(path.name, match[1])] = match[2].strip()
    return skips


def test_every_skip_has_a_reason_and_stands_for_a_failing_check(reports):
    as_is, without_skips = reports
    skips = declared_skips()
    assert skips, "expected the documented skips"
    assert all(len(reason) > 20 for reason in skips.values()), skips
    skipped = {(Path(c["file_path"]).name, c["check_id"]): c.get("check_result", {})
               for c in as_is["results"]["skipped_checks"]}
    assert set(skipped) == set(skips)
    for result in skipped.values():
        assert result.get("suppress_comment", "").strip() not in ("", "No comment provided")
    # Without the comments, exactly the skipped checks fail: no skip is stale.
    assert without_skips["summary"]["parsing_errors"] == 0
    failing = {(Path(c["file_path"]).name, c["check_id"])
               for c in without_skips["results"]["failed_checks"]}
    assert failing == set(skips)
