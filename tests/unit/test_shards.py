"""Fan-out with local files and an in-memory queue: plans for each format, shards run in any
order and redelivered, the finisher's races, poison shards, a changed source, progress; the
CSV is byte for byte what the in-place path writes."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest

from shared.batch import process_batch
from shared.config import Settings
from shared.local_files import LocalFileSource, LocalResultSink
from shared.model_loader import load_model
from shared.ranged_io import SplicedFile
from shared.shards import (
    Plan,
    ShardMessage,
    ShardNames,
    batch_status,
    fail_shard,
    finish,
    make_plan,
    run_shard,
    submit_batch,
)
from tests.conftest import STROKES, draw_character
from tests.payloads import idx_bytes, ink, npy_bytes, zip_bytes

INSTANCE = "test-instance"


class MemoryQueue:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, messages) -> None:
        self.messages.extend(messages)


@pytest.fixture(scope="module")
def model(tiny_model_files):
    return load_model(*tiny_model_files)


@pytest.fixture
def settings() -> Settings:
    # Shards a multiple of the chunk, the chunk within one forward pass: the shards group the
    # items into forward passes exactly as the in-place path does, so the CSVs are equal.
    return dataclasses.replace(Settings.from_env(), batch_shard_items=6, batch_chunk_items=3,
                               batch_progress_s=0.0)


def seven_zip(count: int, *extra: tuple[str, bytes]) -> bytes:
    images = [draw_character(STROKES[c]) for c in "7LT"]
    members = {f"page/{i:03d}.png": images[i % 3] for i in range(count)}
    return zip_bytes({**members, **dict(extra)})


FORMATS = {
    "npy": lambda: npy_bytes(ink(20)),
    "idx": lambda: idx_bytes(ink(20).transpose(0, 2, 1)),
    "zip": lambda: seven_zip(20),
}


@dataclasses.dataclass
class Planned:
    """A local batch submitted with its shards queued in memory."""

    source: LocalFileSource
    sink: LocalResultSink
    queue: MemoryQueue
    messages: list[ShardMessage]


def planned(path: Path, out: Path, settings: Settings, model) -> Planned:
    queue = MemoryQueue()
    source, sink = LocalFileSource(path), LocalResultSink(out)
    assert submit_batch(source, sink, queue, settings, model).status == "planned"
    return Planned(source, sink, queue, [ShardMessage.decode(t) for t in queue.messages])


def run_all(path: Path, out: Path, settings: Settings, model,
            order=None) -> str:
    batch = planned(path, out, settings, model)
    source, sink, messages = batch.source, batch.sink, batch.messages
    statuses = [run_shard(messages[i], source, sink, settings, model, instance=INSTANCE)
                for i in (order or range(len(messages)))]
    return statuses[-1]


def in_place(path: Path, out: Path, settings: Settings, model) -> bytes:
    out.mkdir()
    assert process_batch(LocalFileSource(path), LocalResultSink(out), settings,
                         model).status == "processed"
    return (out / f"{path.name}.csv").read_bytes()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_the_plan_covers_every_item_once_in_order(fmt, tmp_path, settings):
    path = tmp_path / f"b.{fmt}"
    path.write_bytes(FORMATS[fmt]())
    source = LocalFileSource(path)
    plan = make_plan(source, source.describe(), settings, 3)
    assert plan is not None and plan.format == fmt
    assert [(s.first, s.count) for s in plan.shards] == [(0, 6), (6, 6), (12, 6), (18, 2)]
    if fmt == "zip":  # the members' bytes and the directory slices tile their ranges
        assert [s.data[1] for s in plan.shards[:-1]] == [s.data[0] for s in plan.shards[1:]]
        assert [s.directory[1] for s in plan.shards[:-1]] == [
            s.directory[0] for s in plan.shards[1:]]
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@pytest.mark.parametrize(("name", "data"), [
    ("small.npy", lambda: npy_bytes(ink(6))),  # one shard or less
    ("one.npy", lambda: npy_bytes(ink(1))),
    ("b.npy.gz", lambda: __import__("gzip").compress(npy_bytes(ink(20)))),
    ("b.npz", lambda: __import__("tests.payloads").payloads.npz_bytes(images=ink(20))),
    ("seven.png", lambda: draw_character(STROKES["7"])),
    ("lying.npy", lambda: npy_bytes(ink(20))[:-10]),
])
def test_what_is_processed_in_place(name, data, tmp_path, settings):
    path = tmp_path / name
    path.write_bytes(data())
    source = LocalFileSource(path)
    assert make_plan(source, source.describe(), settings, 3) is None


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_sharded_results_equal_in_place_byte_for_byte(fmt, tmp_path, settings, model):
    path = tmp_path / f"b.{fmt}"
    path.write_bytes(FORMATS[fmt]())
    expected = in_place(path, tmp_path / "in-place", settings, model)
    status = run_all(path, tmp_path, settings, model, order=[2, 0, 3, 1])
    assert status == "finished"
    assert (tmp_path / f"b.{fmt}.csv").read_bytes() == expected
    summary = json.loads((tmp_path / f"b.{fmt}.summary.json").read_text())
    assert (summary["items"], summary["shards"], summary["instances"]) == (20, 4, 1)
    assert [t["shard"] for t in summary["shard_timings"]] == [0, 1, 2, 3]
    leftovers = [p.name for p in tmp_path.iterdir() if ".shard-" in p.name
                 or p.name.startswith(".")]
    assert leftovers == []  # no shard records, no staged blocks; the plan stays
    assert (tmp_path / f"b.{fmt}.plan.json").is_file()


def test_skipped_and_failed_members_fail_alone(tmp_path, settings, model):
    path = tmp_path / "mixed.zip"
    path.write_bytes(seven_zip(14, ("notes.txt", b"hello"), ("bad.png", b"not a png")))
    assert run_all(path, tmp_path, settings, model) == "finished"
    summary = json.loads((tmp_path / "mixed.zip.summary.json").read_text())
    assert (summary["items"], summary["skipped"], summary["failed"]) == (15, 1, 1)


def test_a_redelivered_message_restages_the_same_blocks(tmp_path, settings, model):
    path = tmp_path / "b.npy"
    path.write_bytes(FORMATS["npy"]())
    batch = planned(path, tmp_path, settings, model)
    source, sink, queue = batch.source, batch.sink, batch.queue
    first = ShardMessage.decode(queue.messages[0])
    assert run_shard(first, source, sink, settings, model, instance=INSTANCE) == "done"
    assert run_shard(first, source, sink, settings, model, instance=INSTANCE) == "recorded"
    # Redelivered before its record was written (the worker died): the same block ids again.
    names = ShardNames("b.npy", Plan.from_dict(sink.read_json("b.npy.plan.json")).tag)
    blocks = sink.read_json(names.record(0))["blocks"]
    staged = {b: (tmp_path / ".b.npy.csv.blocks" / b).read_bytes() for b in blocks}
    sink.delete(names.record(0))
    assert run_shard(first, source, sink, settings, model, instance=INSTANCE) == "done"
    assert sink.read_json(names.record(0))["blocks"] == blocks == [f"{names.tag}-000000-000000"]
    assert {b: (tmp_path / ".b.npy.csv.blocks" / b).read_bytes() for b in blocks} == staged
    # A duplicate blob event for the same version queues nothing more.
    assert submit_batch(source, sink, queue, settings, model).status == "planned"
    assert len(queue.messages) == 4


def test_two_finishers_and_a_finisher_that_died_write_the_same_bytes(tmp_path, settings, model,
                                                                     monkeypatch):
    path = tmp_path / "b.npy"
    path.write_bytes(FORMATS["npy"]())
    batch = planned(path, tmp_path, settings, model)
    source, sink, queue = batch.source, batch.sink, batch.queue
    plan = Plan.from_dict(sink.read_json(ShardNames("b.npy", "").plan))
    real_write = LocalResultSink.write_json

    def die_on_summary(self, name, document):
        if name.endswith(".summary.json"):
            raise OSError("the finisher died between the commit and the summary")
        real_write(self, name, document)

    monkeypatch.setattr(LocalResultSink, "write_json", die_on_summary)
    messages = [ShardMessage.decode(text) for text in queue.messages]
    for message in messages[:-1]:
        run_shard(message, source, sink, settings, model, instance=INSTANCE)
    with pytest.raises(OSError):
        run_shard(messages[-1], source, sink, settings, model, instance=INSTANCE)
    committed = (tmp_path / "b.npy.csv").read_bytes()
    monkeypatch.setattr(LocalResultSink, "write_json", real_write)
    # The message comes back: the shard is recorded, so it only finishes, as would a second
    # finisher racing the first.
    assert run_shard(messages[-1], source, sink, settings, model,
                     instance=INSTANCE) == "finished"
    summary = (tmp_path / "b.npy.summary.json").read_bytes()
    assert (tmp_path / "b.npy.csv").read_bytes() == committed
    assert not finish(plan, source.describe(), sink, model)  # the records are cleaned up
    # A message delivered once more after the end finds the batch done: nothing is redone.
    assert run_shard(messages[0], source, sink, settings, model,
                     instance=INSTANCE) == "abandoned"
    assert not list(tmp_path.glob("*.shard-*"))
    assert json.loads(summary)["items"] == 20


def test_a_poison_shard_reports_its_items_and_the_batch_finishes(tmp_path, settings, model):
    path = tmp_path / "b.zip"
    path.write_bytes(seven_zip(20))
    batch = planned(path, tmp_path, settings, model)
    source, sink = batch.source, batch.sink
    messages = batch.messages
    for message in messages[:1] + messages[2:]:
        run_shard(message, source, sink, settings, model, instance=INSTANCE)
    assert batch_status(sink, "b.zip")["shards_done"] == 3
    assert fail_shard(messages[1], source, sink, model, instance=INSTANCE) == "finished"
    lines = (tmp_path / "b.zip.csv").read_text().splitlines()
    failed = [line for line in lines if "shard_failed" in line]
    assert len(failed) == 6 and failed[0].startswith("page/006.png,")
    summary = json.loads((tmp_path / "b.zip.summary.json").read_text())
    assert summary["errors"] == {"shard_failed": 6} and summary["items"] == 20


def test_a_changed_source_abandons_the_old_plan(tmp_path, settings, model):
    path = tmp_path / "b.npy"
    path.write_bytes(FORMATS["npy"]())
    batch = planned(path, tmp_path, settings, model)
    source, sink, queue = batch.source, batch.sink, batch.queue
    path.write_bytes(npy_bytes(ink(21, seed=1)))  # a new version, its own event to come
    message = ShardMessage.decode(queue.messages[0])
    assert run_shard(message, source, sink, settings, model, instance=INSTANCE) == "abandoned"
    assert not (tmp_path / "b.npy.csv").exists()


def test_progress_while_running_then_the_summary(tmp_path, settings, model):
    path = tmp_path / "b.npy"
    path.write_bytes(FORMATS["npy"]())
    batch = planned(path, tmp_path, settings, model)
    source, sink = batch.source, batch.sink
    messages = batch.messages
    run_shard(messages[0], source, sink, settings, model, instance=INSTANCE)
    status = batch_status(sink, "b.npy")
    assert (status["status"], status["shards"], status["shards_done"],
            status["items_done"]) == ("running", 4, 1, 6)
    for message in messages[1:]:
        run_shard(message, source, sink, settings, model, instance=INSTANCE)
    assert batch_status(sink, "b.npy")["status"] == "processed"


def test_a_zip_shard_reads_its_members_through_a_buffer(tmp_path, settings, model,
                                                        monkeypatch):
    """zipfile reads a member's header, name and data separately; the shard's view buffers
    them, so the view's Python ``readinto`` runs a few times a shard, not a few times a
    member."""
    settings = dataclasses.replace(settings, batch_shard_items=60)
    path = tmp_path / "b.zip"
    path.write_bytes(seven_zip(120))
    calls = []
    spliced_readinto = SplicedFile.readinto
    monkeypatch.setattr(SplicedFile, "readinto",
                        lambda self, buffer: calls.append(len(buffer))
                        or spliced_readinto(self, buffer))
    batch = planned(path, tmp_path, settings, model)
    calls.clear()  # planning reads the directory: not a shard's members
    run_shard(batch.messages[0], batch.source, batch.sink, settings, model, instance=INSTANCE)
    assert 0 < len(calls) < 20  # the shard holds 60 members: read one by one, 186 calls


def test_a_zip_with_members_out_of_directory_order_is_processed_in_place(tmp_path, settings):
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(20):
            archive.writestr(f"{i:03d}.png", draw_character(STROKES["7"]))
        archive.filelist.reverse()  # the directory lists the members backwards
    source = LocalFileSource(path)
    assert make_plan(source, source.describe(), settings, 3) is None


def test_messages_that_are_not_ours_are_refused():
    from shared.errors import InvalidBatch

    for text in ("", "{}", '{"batch": "a", "etag": "x", "shard": "two"}', "[1]"):
        with pytest.raises(InvalidBatch):
            ShardMessage.decode(text)
