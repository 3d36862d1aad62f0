"""process_batch with a local source and sink: the CSV, the summary, the error file, and the
guarantees around them (once per etag, nothing partial), plus the ``batch`` command line."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from shared.batch import csv_header, process_batch
from shared.config import REPO_ROOT, Settings
from shared.idx import uint8_header
from shared.local_files import LocalFileSource, LocalResultSink
from shared.model_loader import load_model
from tests.conftest import STROKES, draw_character


@pytest.fixture(scope="module")
def model(tiny_model_files):
    return load_model(*tiny_model_files)


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(Settings.from_env(), batch_chunk_items=4, batch_progress_s=0.0)


def run(path: Path, settings: Settings, model, out: Path | None = None, **kwargs):
    return process_batch(LocalFileSource(path), LocalResultSink(out or path.parent), settings,
                         model, **kwargs)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_npy(path: Path, count: int, seed: int = 0) -> Path:
    tiles = np.random.default_rng(seed).integers(1, 256, (count, 28, 28), dtype=np.uint8)
    np.save(path, tiles)
    return path


def bump(path: Path) -> None:
    """Give a file a new version (a new modification time, hence a new etag)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_csv_rows_in_input_order_with_every_column(tmp_path, settings, model):
    members = {"b/seven.png": draw_character(STROKES["7"]), "a/readme.txt": b"hello",
               "a/broken.png": b"\x89PNG\r\n\x1a\n broken", "c/ell.jpg":
               draw_character(STROKES["L"], fmt="JPEG"), "blank.png": draw_character([])}
    batch = write_zip(tmp_path / "forms.zip", members)
    outcome = run(batch, settings, model)
    assert outcome.status == "processed"
    with open(tmp_path / "forms.zip.csv", newline="") as stream:
        assert next(csv.reader(stream)) == csv_header(3) == [
            "item", "label", "probability", "label_2", "probability_2", "label_3",
            "probability_3", "error_code", "error_message"]
    table = rows(tmp_path / "forms.zip.csv")
    assert [r["item"] for r in table] == ["b/seven.png", "a/broken.png", "c/ell.jpg", "blank.png"]
    good, broken, _, blank = table
    assert good["label"] in model.labels and good["error_code"] == ""
    probabilities = [float(good[k]) for k in ("probability", "probability_2", "probability_3")]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-5
    assert (broken["label"], broken["probability"], broken["error_code"]) == ("", "",
                                                                              "invalid_image")
    assert broken["error_message"]
    assert blank["error_code"] == "blank_image"


def test_summary_fields(tmp_path, settings, model):
    batch = write_npy(tmp_path / "digits.npy", 10)
    outcome = run(batch, settings, model)
    summary = json.loads((tmp_path / "digits.npy.summary.json").read_text())
    assert summary == outcome.document
    assert {k: summary[k] for k in ("batch", "results", "format", "items", "succeeded", "failed",
                                    "skipped", "errors", "top_k")} == {
        "batch": "digits.npy", "results": "digits.npy.csv", "format": "npy", "items": 10,
        "succeeded": 10, "failed": 0, "skipped": 0, "errors": {}, "top_k": 3}
    assert summary["model"] == {"name": model.manifest.name, "version": model.manifest.version,
                                "sha256": model.manifest.sha256}
    assert summary["source"] == {"name": "digits.npy", "etag": outcome.source.etag,
                                 "size": batch.stat().st_size}
    assert summary["started"] <= summary["finished"]
    assert summary["duration_s"] >= 0 and summary["items_per_s"] > 0
    assert [r["item"] for r in rows(tmp_path / "digits.npy.csv")] == [str(i) for i in range(10)]


def test_top_k_sets_the_columns(tmp_path, settings, model):
    run(write_npy(tmp_path / "a.npy", 2), settings, model, top_k=5)
    assert list(rows(tmp_path / "a.npy.csv")[0])[-4:] == ["label_5", "probability_5",
                                                          "error_code", "error_message"]


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"neither an archive nor an array", "invalid_batch"),
     (gzip.compress(uint8_header((9, 28, 28))),
      "invalid_batch")],
    ids=["unreadable", "truncated-idx"],
)
def test_unreadable_batch_gets_an_error_file_only(tmp_path, settings, model, content, code):
    batch = tmp_path / "bad.bin"
    batch.write_bytes(content)
    outcome = run(batch, settings, model)
    assert outcome.status == "failed"
    error = json.loads((tmp_path / "bad.bin.error.json").read_text())
    assert (error["code"], error["batch"], error["source"]["etag"]) == (code, "bad.bin",
                                                                       outcome.source.etag)
    assert error["message"] and error["time"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bin", "bad.bin.error.json"]


def test_batch_over_a_limit_gets_an_error_file(tmp_path, settings, model):
    batch = write_npy(tmp_path / "many.npy", 5)
    outcome = run(batch, dataclasses.replace(settings, batch_max_items=4), model)
    assert (outcome.status, outcome.document["code"]) == ("failed", "batch_too_large")


def test_archive_without_images_is_an_error(tmp_path, settings, model):
    batch = write_zip(tmp_path / "docs.zip", {"a.txt": b"a", "b.pdf": b"%PDF"})
    outcome = run(batch, settings, model)
    assert outcome.status == "failed"
    assert "2 archive entries skipped" in outcome.document["message"]


def test_same_etag_is_not_redone_and_a_new_one_is(tmp_path, settings, model):
    batch = write_npy(tmp_path / "a.npy", 6)
    first = run(batch, settings, model)
    outputs = [tmp_path / "a.npy.csv", tmp_path / "a.npy.summary.json"]
    stamps = [p.stat().st_mtime_ns for p in outputs]
    again = run(batch, settings, model)
    assert again.status == "unchanged" and again.document == first.document
    assert [p.stat().st_mtime_ns for p in outputs] == stamps

    write_npy(batch, 8, seed=1)
    bump(batch)
    redone = run(batch, settings, model)
    assert redone.status == "processed" and redone.source.etag != first.source.etag
    assert len(rows(outputs[0])) == 8
    assert json.loads(outputs[1].read_text())["source"]["etag"] == redone.source.etag


def test_an_error_is_final_for_its_etag_and_replaced_by_a_good_version(tmp_path, settings,
                                                                        model):
    batch = tmp_path / "a.npy"
    batch.write_bytes(b"garbage")
    assert run(batch, settings, model).status == "failed"
    assert run(batch, settings, model).status == "unchanged"
    write_npy(batch, 3)
    bump(batch)
    assert run(batch, settings, model).status == "processed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.npy.csv",
                                                          "a.npy.summary.json"]


def test_a_failing_new_version_leaves_nothing_that_looks_like_a_result(tmp_path, settings,
                                                                       model):
    batch = write_npy(tmp_path / "a.npy", 12)
    run(batch, settings, model)
    good = np.load(batch)
    npy_format = np.lib.format  # a header for 12 images, data for 9: fails after two chunks
    with open(batch, "wb") as stream:
        npy_format.write_array_header_1_0(stream, npy_format.header_data_from_array_1_0(good))
        stream.write(good[:9].tobytes())
    bump(batch)
    outcome = run(batch, settings, model)
    assert outcome.status == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.npy.error.json"]


class FlakySource(LocalFileSource):
    """Storage that drops the connection part-way through the download."""

    @contextmanager
    def open(self, info):
        with super().open(info) as stream:
            yield Flaky(stream.read(3000))


class Flaky(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._data.readinto(buffer)
        if not n:
            raise ConnectionResetError("storage went away")
        return n


def test_a_transient_failure_propagates_and_commits_nothing(tmp_path, settings, model):
    batch = write_npy(tmp_path / "a.npy", 12)
    with pytest.raises(ConnectionResetError):
        process_batch(FlakySource(batch), LocalResultSink(tmp_path), settings, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]  # no temp file either


def test_the_batch_command_on_a_local_file(tmp_path, tiny_model_files):
    batch = write_npy(tmp_path / "a.npy", 3)
    env = {**os.environ, "EMNIST_EDGE_MODEL_PATH": str(tiny_model_files[0]),
           "EMNIST_EDGE_MANIFEST_PATH": str(tiny_model_files[1])}
    command = [sys.executable, "-m", "shared", "batch", str(batch), "--out",
               str(tmp_path / "out")]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "processed"
    assert len(rows(tmp_path / "out" / "a.npy.csv")) == 3
    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert json.loads(second.stdout)["status"] == "unchanged"
    (tmp_path / "bad.npy").write_bytes(b"nope")
    failed = subprocess.run([*command[:4], str(tmp_path / "bad.npy")], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["code"] == "invalid_batch"


def test_an_unexpected_error_is_a_final_internal_error_and_is_logged(tmp_path, settings, model,
                                                                     monkeypatch, caplog):
    batch = write_npy(tmp_path / "a.npy", 3)

    def explode(*_args, **_kwargs):
        raise ValueError("a bug, not the batch's fault")

    monkeypatch.setattr("shared.batch.top_k_arrays", explode)
    outcome = run(batch, settings, model)
    assert outcome.status == "failed"
    assert outcome.document["code"] == "internal_error"
    assert "a bug" not in outcome.document["message"]  # no internals in the result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.npy.error.json"]
    assert "a bug, not the batch's fault" in caplog.text  # the traceback is in the log
    monkeypatch.undo()
    assert run(batch, settings, model).status == "unchanged"  # final for this etag
