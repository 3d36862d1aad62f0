import os

import pytest

from shared.config import Settings


def test_defaults_without_environment(monkeypatch):
    for name in ("EMNIST_EDGE_TORCH_THREADS", "EMNIST_EDGE_DYNAMIC_BATCHING",
                 "EMNIST_EDGE_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.torch_threads == 1
    assert settings.dynamic_batching is True
    assert settings.model_path.name == "emnist_edge.pt"


def test_one_worker_per_core_this_process_may_use(monkeypatch):
    for name in ("EMNIST_EDGE_WORKERS", "EMNIST_EDGE_BATCH_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    mine = os.sched_getaffinity(0)
    assert Settings.from_env().workers == len(mine)
    os.sched_setaffinity(0, {min(mine)})  # as taskset -c or a container's CPU set would
    try:
        settings = Settings.from_env()
    finally:
        os.sched_setaffinity(0, mine)
    assert (settings.workers, settings.batch_workers) == (1, 1)


@pytest.mark.parametrize(
    ("name", "raw", "field", "value"),
    [
        ("TORCH_THREADS", " 2 ", "torch_threads", 2),
        ("DYNAMIC_BATCHING", "Off", "dynamic_batching", False),
        ("DYNAMIC_BATCHING", "yes", "dynamic_batching", True),
        ("DYNAMIC_BATCH_MAX_WAIT_MS", "1.5", "dynamic_batch_max_wait_ms", 1.5),
        ("MODEL_PATH", "/srv/m.pt", "model_path", "/srv/m.pt"),
        ("TORCH_THREADS", "   ", "torch_threads", 1),
    ],
)
def test_values_are_parsed(monkeypatch, name, raw, field, value):
    monkeypatch.setenv("EMNIST_EDGE_" + name, raw)
    got = getattr(Settings.from_env(), field)
    assert (str(got) if field == "model_path" else got) == value


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("TORCH_THREADS", "two", "an integer"),
        ("DYNAMIC_BATCH_MAX_WAIT_MS", "soon", "a number"),
        ("DYNAMIC_BATCHING", "maybe", "on/off"),
    ],
)
def test_bad_values_name_the_setting(monkeypatch, name, raw, expected):
    monkeypatch.setenv("EMNIST_EDGE_" + name, raw)
    with pytest.raises(ValueError, match=f"EMNIST_EDGE_{name}=.* is not {expected}"):
        Settings.from_env()
