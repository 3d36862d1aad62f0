import numpy as np
import pytest

from model.data import data_dir
from shared.emnist import load_labels, load_split, upright


def test_data_dir_needs_a_path(monkeypatch):
    monkeypatch.delenv("EMNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="EMNIST_DIR"):
        data_dir(None)


def test_data_dir_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_dir(tmp_path / "nope")


def test_missing_split_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="emnist-byclass-test-images"):
        load_split(tmp_path, "test")


def test_upright_is_a_transpose():
    raw = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    np.testing.assert_array_equal(upright(raw)[1], raw[1].T)


def test_real_splits_and_mapping(emnist_dir):
    labels = load_labels(emnist_dir)
    assert "".join(labels) == (
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    )
    images, y = load_split(emnist_dir, "test")
    assert images.shape == (11_634, 28, 28) and images.dtype == np.uint8
    assert y.shape == (11_634,) and int(y.max()) == 61
