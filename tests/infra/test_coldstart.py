"""infra/coldstart.py's child, the one cold start it times, run here from the work tree (its
development-venv baseline): it must classify, and tell a start with Application Insights'
settings from one without, or `make bench` stops at its check (it did once: the child read the
root's instruments, always there, instead of the SDK the settings install)."""

from __future__ import annotations

import sys

import pytest
from test_package import load_infra_module

coldstart = load_infra_module("coldstart")


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    script = tmp_path_factory.mktemp("coldstart") / "coldstart_child.py"
    script.write_text(coldstart.CHILD)
    return script


@pytest.mark.parametrize("application_insights", [False, True], ids=["plain", "app-insights"])
def test_the_child_classifies_and_says_whether_the_exporters_were_installed(
    child, tmp_path, application_insights
):
    settings = ({**coldstart.APPLICATION_INSIGHTS, "TMPDIR": str(tmp_path)}
                if application_insights else None)
    started = coldstart.start([sys.executable, "-I"], coldstart.ROOT, [], child, settings)
    assert (started["status"], started["label"]) == (200, "7")
    assert started["telemetry"] is application_insights
    assert started["first_classification_s"] > 0
