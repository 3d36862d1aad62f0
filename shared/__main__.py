"""Command line: ``python -m shared classify IMAGE... [--top-k N] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.classifier import DEFAULT_TOP_K, classify_images
from shared.errors import EmnistEdgeError


def classify_command(args: argparse.Namespace) -> int:
    images = []
    for path in args.images:
        try:
            images.append(Path(path).read_bytes())
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
    results = classify_images(images, top_k=args.top_k)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description="emnist-edge tools")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="classify image files (top-k per image)")
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    classify.add_argument("--json", action="store_true", help="one JSON object per line")
    classify.set_defaults(handler=classify_command)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except EmnistEdgeError as error:
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
