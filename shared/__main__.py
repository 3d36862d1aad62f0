"""Command line: ``python -m shared classify IMAGE... [--top-k N] [--json]`` and ``python -m
shared batch PATH_OR_BLOB``.

An entry point, not part of the core: this is the command line's composition root (it reads
the settings once, loads the model, and for a blob builds the storage adapter of
``functions.storage``); ``import shared`` never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.classifier import DEFAULT_TOP_K, classify_images
from shared.config import Settings
from shared.errors import EmnistEdgeError
from shared.model_loader import ModelSpec, load_spec
from shared.process_tuning import tune_process


def classify_command(args: argparse.Namespace) -> int:
    images = []
    for path in args.images:
        try:
            images.append(Path(path).read_bytes())
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
    settings = Settings.from_env()
    results = classify_images(images, args.top_k, load_spec(ModelSpec.of(settings)), settings)
    failed = 0
    for path, result in zip(args.images, results, strict=True):
        if isinstance(result, EmnistEdgeError):
            failed += 1
            record = {"image": path, "error": result.to_dict()}
        else:
            record = {"image": path, **result.to_dict()}
        if args.json:
            print(json.dumps(record))
        elif "error" in record:
            print(f"{path}: error ({result.code}): {result.message}")
        else:
            ranked = "  ".join(f"{item['label']} {item['probability']:.1%}"
                               for item in record["top_k"])
            print(f"{path}: {ranked}")
    return 1 if failed else 0


def batch_command(args: argparse.Namespace) -> int:
    """Run the blob trigger's code on a local file (results beside it or in --out) or on a blob
    (``container/name`` or a blob URL; results to the results container).

    Imports here, not at the top: ``classify`` should not pay for loading the storage SDK.
    """
    import logging

    from azure.core.exceptions import AzureError

    from functions.storage import (
        StorageNotConfigured,
        blob_service,
        process_blob,
        quiet_sdk_http_logging,
    )
    from shared.batch import process_batch
    from shared.local_files import LocalFileSource, LocalResultSink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quiet_sdk_http_logging()
    settings = Settings.from_env()
    spec = ModelSpec.of(settings)
    path = Path(args.batch)
    if path.is_file():
        out = Path(args.out) if args.out else path.parent
        out.mkdir(parents=True, exist_ok=True)
        outcome = process_batch(LocalFileSource(path), LocalResultSink(out), settings,
                                load_spec(spec), top_k=args.top_k)
        where = str(out)
    else:
        if args.out:
            print("error: --out applies to local files; a blob's results go to the results "
                  "container", file=sys.stderr)
            return 2
        try:
            service = blob_service(settings, args.connection_string)
            container, name = _blob_location(args.batch, service.url)
            outcome = process_blob(service.get_blob_client(container, name), settings, service,
                                   load_spec(spec), top_k=args.top_k)
        except (StorageNotConfigured, AzureError) as exc:
            reason = str(exc).splitlines()[0]
            print(f"error: {args.batch} is no local file, and as a blob: {reason}",
                  file=sys.stderr)
            return 2
        where = f"container {settings.results_container}"
    if outcome.status == "missing":
        print(f"error: no such file or blob: {args.batch}", file=sys.stderr)
        return 2
    print(json.dumps({"status": outcome.status, "results": where, **(outcome.document or {})},
                     indent=2))
    return 1 if outcome.status == "failed" else 0


def status_command(args: argparse.Namespace) -> int:
    """Where a batch stands: done (its summary or error), running (shards and items done of
    a fanned-out batch), or unknown."""
    from azure.core.exceptions import AzureError

    from functions.storage import StorageNotConfigured, blob_service, results_sink
    from shared.local_files import LocalResultSink
    from shared.shards import batch_status

    settings = Settings.from_env()
    try:
        if args.results:
            sink = LocalResultSink(Path(args.results))
        else:
            service = blob_service(settings, args.connection_string)
            sink = results_sink(settings, service)
        status = batch_status(sink, args.batch)
    except (StorageNotConfigured, AzureError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps(status, indent=2))
    return 0 if status["status"] != "unknown" else 1


def _blob_location(text: str, account_url: str) -> tuple[str, str]:
    """``container/name``, or a blob URL of this account -> (container, blob name)."""
    if text.startswith(("http://", "https://")):
        from azure.storage.blob import BlobClient

        if not text.startswith(account_url.rstrip("/") + "/"):
            raise SystemExit(f"error: {text} is not a blob of the account at {account_url}")
        blob = BlobClient.from_blob_url(text)
        return blob.container_name, blob.blob_name
    container, _, name = text.partition("/")
    if not container or not name:
        raise SystemExit(f"error: {text} is neither a local file nor container/blob-name")
    return container, name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description="emnist-edge tools")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="classify image files (top-k per image)")
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    classify.add_argument("--json", action="store_true", help="one JSON object per line")
    classify.set_defaults(handler=classify_command)
    batch = commands.add_parser(
        "batch", help="classify a batch (zip, tar, npy, npz, IDX, image) into results",
        description="Runs the blob trigger's code on a local file or on a blob in storage "
        "(e.g. Azurite): results are <batch>.csv and <batch>.summary.json, or <batch>.error.json.",
    )
    batch.add_argument("batch", metavar="PATH_OR_BLOB",
                       help="a local file, container/blob-name, or a blob URL")
    batch.add_argument("--out", metavar="DIR", help="results folder for a local file "
                       "(default: beside it)")
    batch.add_argument("--connection-string", help="storage connection string for a blob "
                       "(default: the AzureWebJobsStorage setting)")
    batch.add_argument("--top-k", type=int, default=None,
                       help="ranked labels per item (default: EMNIST_EDGE_BATCH_TOP_K)")
    batch.set_defaults(handler=batch_command)
    status = commands.add_parser(
        "status", help="where a batch stands (done, or shards and items done so far)",
        description="A batch's summary or error when it is done; while a fanned-out batch "
        "runs, how many of its shards and items are done.")
    status.add_argument("batch", metavar="NAME", help="the batch's name in the batches "
                        "container (or a local file's name with --results)")
    status.add_argument("--results", metavar="DIR", help="a local results folder instead of "
                        "the results container")
    status.add_argument("--connection-string", help="storage connection string (default: the "
                        "AzureWebJobsStorage setting)")
    status.set_defaults(handler=status_command)
    args = parser.parse_args(argv)
    tune_process()
    try:
        return args.handler(args)
    except EmnistEdgeError as error:
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
