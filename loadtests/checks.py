"""Is an answer right? Pure functions, so the load test's verdicts are unit-testable.

A load test that only counts status codes passes a server that answers 200 with garbage, so
every answer is checked down to the label: the corpus only holds characters the model must get
right, and a wrong label is a failure like a 500.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any


def classify_answer(status: int, body: bytes, expected: Sequence[str]) -> str | None:
    """Why a classify answer is wrong (None when right): status 200, one result per image in
    request order, each with a label, and that label the expected one."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    try:
        results = json.loads(body)["results"]
    except (ValueError, KeyError, TypeError):
        return f"no results in the answer: {body[:200]!r}"
    if len(results) != len(expected):
        return f"{len(results)} results for {len(expected)} images"
    for index, (result, label) in enumerate(zip(results, expected, strict=True)):
        if "label" not in result:
            return f"image {index}: no label ({result.get('error')})"
        if result["label"] != label:
            return f"image {index}: label {result['label']!r}, expected {label!r}"
    return None


def json_answer(status: int, body: bytes, key: str) -> str | None:
    """Why a JSON answer (health, model) is wrong: status 200 and ``key`` present."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    try:
        document: Any = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:200]!r}"
    return None if isinstance(document, dict) and key in document else f"no {key!r} in answer"


def batch_results(summary: dict[str, Any], csv_text: str, expected: Sequence[str]) -> str | None:
    """Why a batch's results are wrong: every item classified, in order, with its label."""
    if summary.get("items") != len(expected) or summary.get("failed"):
        return f"summary counts {summary.get('items')} items, {summary.get('failed')} failed, " \
               f"for {len(expected)} sent"
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    labels = [row["label"] for row in rows]
    if labels != list(expected):
        wrong = sum(a != b for a, b in zip(labels, expected, strict=False))
        return f"{wrong} of {len(expected)} labels wrong (or rows missing: {len(rows)})"
    return None
