import json
import subprocess
import sys

from shared.config import REPO_ROOT
from tests.conftest import STROKES, draw_character


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_classify_prints_top3(tmp_path):
    path = tmp_path / "seven.png"
    path.write_bytes(draw_character(STROKES["7"]))
    result = run_cli("classify", str(path))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"{path}: ")
    assert line.count("%") == 3


def test_classify_json_and_top_k(tmp_path):
    paths = []
    for name in ("L", "T"):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(draw_character(STROKES[name], fmt="JPEG"))
        paths.append(str(path))
    result = run_cli("classify", "--json", "--top-k", "5", *paths)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == paths
    assert all(len(r["top_k"]) == 5 for r in records)


def test_bad_image_is_reported_and_fails_the_exit_code(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(draw_character(STROKES["X"]))
    bad.write_bytes(b"\x89PNG but not really")
    result = run_cli("classify", str(good), str(bad))
    assert result.returncode == 1
    assert f"{bad}: error (invalid_image)" in result.stdout
    assert "Traceback" not in result.stderr


def test_missing_file_and_bad_top_k(tmp_path):
    missing = run_cli("classify", str(tmp_path / "nope.png"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    path = tmp_path / "a.png"
    path.write_bytes(draw_character(STROKES["L"]))
    bad_k = run_cli("classify", "--top-k", "99", str(path))
    assert bad_k.returncode == 2 and "top_k must be between 1 and 62" in bad_k.stderr
    assert "Traceback" not in bad_k.stderr
