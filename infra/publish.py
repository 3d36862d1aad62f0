"""Publish the deployment package to a Flex Consumption app through its one-deploy endpoint.

``python infra/publish.py --scm-url https://<app>.scm.<region>.azurewebsites.net --zip
dist/emnist-edge.zip`` with an Azure Resource Manager access token in ``AZURE_ACCESS_TOKEN``
(``az account get-access-token --resource https://management.azure.com/``). Standard library
only: the deploy workflow runs it with the runner's own Python.

Why not ``az functionapp deployment source config-zip``: Flex Consumption takes packages only
through one deploy (``POST /api/publish``; "The Flex Consumption plan doesn't support zip
deployment", https://learn.microsoft.com/azure/azure-functions/deployment-zip-push), and the
Azure CLI's Flex path (``enable_zip_deploy_flex`` in azure-cli's appservice/custom.py) sets
``build_remote = build_remote or runtime == 'python'``: for a Python app it always asks for a
remote build, whatever ``--build-remote false`` says. A remote build would pip-install
requirements.txt on the platform and replace the CPU-only torch this package carries with
PyPI's CUDA build. So the package goes to ``/api/publish?RemoteBuild=false`` here, with:

- bounded retries while the app identity's new Storage Blob Data Owner role propagates (the
  platform stores the package in the deployment container with that identity; until the role
  takes effect the endpoint answers 403, or 400 with a ``BlobUploadFailedException`` wrapping
  storage's 403);
- the deployment followed to its end: the endpoint answers 200/202 with the deployment id
  as soon as the upload is accepted, and ``/api/deployments/<id>`` reports ``status`` 4
  (success) or 3 (failure) in its body whatever the HTTP status; a failure prints the log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEPLOYER = "emnist-edge"
SUCCESS, FAILED = 4, 3  # Kudu's DeployStatus values, as /api/deployments/<id> reports them


class PublishError(RuntimeError):
    """The package was not deployed; the message says why and what to check."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


@dataclass(frozen=True)
class Schedule:
    """How long to keep trying: upload attempts and the wait between them (the role's
    propagation), then the polls of the deployment's status (the platform unpacking and
    restarting the app)."""

    attempts: int = 10
    retry_delay_s: float = 60.0
    poll_interval_s: float = 5.0
    poll_timeout_s: float = 900.0


def http(method: str, url: str, token: str, data: bytes | None = None,
         content_type: str | None = None, timeout_s: float = 600.0) -> Reply:
    headers = {"Authorization": f"Bearer {token}", "Cache-Control": "no-cache"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Reply(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read().decode("utf-8", "replace"))


def role_still_propagating(reply: Reply) -> bool:
    """A 403 from the endpoint, or its 400 wrapping storage's 403 on the package upload."""
    return reply.status == 403 or (reply.status == 400 and "BlobUploadFailed" in reply.body)


def upload(scm_url: str, package: bytes, token: str, schedule: Schedule) -> str:
    """POST the package; return the deployment id the endpoint answers with."""
    url = f"{scm_url.rstrip('/')}/api/publish?RemoteBuild=false&Deployer={DEPLOYER}"
    for attempt in range(1, schedule.attempts + 1):
        reply = http("POST", url, token, package, "application/zip")
        if reply.status in (200, 202):
            return reply.body.strip().strip('"')
        if not role_still_propagating(reply):
            raise PublishError(f"the one-deploy endpoint answered {reply.status}: "
                               f"{reply.body[:2000]}")
        print(f"::warning::package upload attempt {attempt} of {schedule.attempts} answered "
              f"{reply.status} (the app identity's new role still propagating); retrying in "
              f"{schedule.retry_delay_s:g} s", flush=True)
        if attempt < schedule.attempts:
            time.sleep(schedule.retry_delay_s)
    raise PublishError(
        f"the package upload was refused {schedule.attempts} times: check the app identity's "
        "Storage Blob Data Owner role on the storage account (infra/app/rbac.bicep) and the "
        "deployment container in the app's functionAppConfig (infra/app/function-app.bicep)")


def follow(scm_url: str, deployment_id: str, token: str, schedule: Schedule) -> dict:
    """Poll the deployment until it completes; return its record, or raise with its log."""
    url = f"{scm_url.rstrip('/')}/api/deployments/{deployment_id}"
    deadline = time.monotonic() + schedule.poll_timeout_s
    while True:
        reply = http("GET", url, token)
        record = json.loads(reply.body) if reply.status == 200 and reply.body.strip() else {}
        if record.get("complete") or record.get("status") in (SUCCESS, FAILED):
            break
        if time.monotonic() >= deadline:
            raise PublishError(f"deployment {deployment_id} did not complete in "
                               f"{schedule.poll_timeout_s:g} s (last answer {reply.status}: "
                               f"{reply.body[:500]})")
        time.sleep(schedule.poll_interval_s)
    if record.get("status") != SUCCESS:
        log = http("GET", f"{url}/log", token)
        raise PublishError(f"deployment {deployment_id} failed (status {record.get('status')}):"
                           f" {record.get('status_text') or ''}\n{log.body[:8000]}")
    return record


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scm-url", required=True,
                        help="the app's SCM site, https://<host> (hostNameSslStates, Repository)")
    parser.add_argument("--zip", required=True, type=Path, help="the deployment package")
    parser.add_argument("--attempts", type=int, default=Schedule.attempts)
    parser.add_argument("--retry-delay", type=float, default=Schedule.retry_delay_s,
                        help="seconds between upload attempts")
    parser.add_argument("--poll-timeout", type=float, default=Schedule.poll_timeout_s)
    parser.add_argument("--poll-interval", type=float, default=Schedule.poll_interval_s)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    token = os.environ.get("AZURE_ACCESS_TOKEN", "")
    if not token:
        print("::error::set AZURE_ACCESS_TOKEN (az account get-access-token --resource "
              "https://management.azure.com/ --query accessToken --output tsv)", file=sys.stderr)
        return 2
    schedule = Schedule(args.attempts, args.retry_delay, args.poll_interval, args.poll_timeout)
    try:
        deployment_id = upload(args.scm_url, args.zip.read_bytes(), token, schedule)
        print(f"package accepted: deployment {deployment_id}", flush=True)
        record = follow(args.scm_url, deployment_id, token, schedule)
    except PublishError as error:
        print(f"::error::{error}", file=sys.stderr)
        return 1
    print(f"deployment {deployment_id} succeeded ({record.get('end_time', '')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
