"""The deployment package, built by infra/package.py as the deploy workflow and azd build it.

- .funcignore is read with git's semantics (checked against `git check-ignore` itself).
- The package carries what .funcignore promises and nothing it excludes (checked against an
  independent list of what the app needs).
- The app imports and indexes its functions from the package alone, in a clean virtualenv made
  here (no system site-packages, the work tree not on sys.path), and serves the shipped model.

Dependencies: the deploy workflow runs this module with EMNIST_EDGE_PACKAGE_DIR=dist/app, the
package it built with .python_packages (Linux, CPU-only torch), and the clean virtualenv imports
them from there exactly as the Functions worker does. Without that variable the package is built
here with --deps none (installing torch & co. again would take a minute and need the network)
and the virtualenv reaches the dependencies through a .pth file naming this interpreter's
site-packages, appended after the package: the app's own code still comes from the package
only, and the work tree is never on sys.path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from bicep_tree import INFRA, BicepFile

REPO = INFRA.parent
PACKAGER = INFRA / "package.py"
SITE_PACKAGES = ".python_packages/lib/site-packages"


def load_infra_module(name: str):
    """A script of infra/ (``package``, ``coldstart``) as a module."""
    spec = importlib.util.spec_from_file_location(f"emnist_edge_{name}", INFRA / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building classes
    spec.loader.exec_module(module)
    return module


packager = load_infra_module("package")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path | None]:
    """(the staged package folder, its zip or None when it came prebuilt)."""
    prebuilt = os.environ.get("EMNIST_EDGE_PACKAGE_DIR")
    if prebuilt:
        folder = Path(prebuilt).resolve()
        assert (folder / SITE_PACKAGES).is_dir(), f"{folder} has no {SITE_PACKAGES}"
        archive = folder.parent / packager.ZIP_NAME
        return folder, archive if archive.is_file() else None
    out = tmp_path_factory.mktemp("package")
    subprocess.run([sys.executable, str(PACKAGER), "--deps", "none", "--out", str(out)],
                   check=True, cwd=REPO, capture_output=True, text=True)
    return out / "app", out / packager.ZIP_NAME


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def app_part(files: set[str]) -> set[str]:
    return {name for name in files if not name.startswith(".python_packages/")}


def built_by_the_packager(name: str) -> bool:
    """What infra/package.py adds itself rather than copies: bytecode and the staged
    .funcignore that azd applies."""
    return name == ".funcignore" or "/__pycache__/" in f"/{name}"


def bytecode_of(source: str) -> str:
    return Path(importlib.util.cache_from_source(source)).as_posix()


# --- .funcignore semantics ---------------------------------------------------------------------

SAMPLE_PATHS = [
    "function_app.py", "host.json", "requirements.txt", "requirements-dev.txt", "README.md",
    "local.settings.json", "pyproject.toml", "Makefile", "package.json", ".funcignore",
    ".gitignore", "azure.yaml", "functions/http_api.py", "functions/static/app.js",
    "functions/__pycache__/http_api.cpython-311.pyc", "functions/static/.DS_Store",
    "shared/config.py", "shared/deep/__pycache__/x.cpython-311.pyc", "model/emnist_edge.pt",
    "model/manifest.json", "model/train.py", "model/__init__.py", "model/MODEL_CARD.md",
    "model/old/emnist_edge.pt", "tests/conftest.py", "tests/infra/test_package.py",
    "infra/main.bicep", "infra/package.py", "loadtests/locustfile.py",
    "loadtests/requirements.txt", "bench/report.py", "local/serve.py",
    ".github/workflows/ci.yml", ".venv/bin/python", "node_modules/azurite/package.json",
    "artifacts/screenshots/page.png", ".gpu/run.sh", "dist/emnist-edge.zip",
    ".python_packages/lib/site-packages/torch/__init__.py",
    ".python_packages/lib/site-packages/torch/__pycache__/__init__.cpython-311.pyc",
    "__pycache__/function_app.cpython-311.pyc", "shared.py",
]

PATTERN_CASES = {
    "names anywhere": (["*.log", "build/"], ["a.log", "x/y/b.log", "build/o", "x/build/o",
                                             "build", "logs/a.txt"]),
    "anchoring and globs": (["/top.txt", "doc/*.md", "a/**/z", "**/cache", "q?.txt", "[ab]1"],
                            ["top.txt", "sub/top.txt", "doc/x.md", "doc/sub/x.md", "a/z",
                             "a/b/c/z", "cache", "deep/cache/f", "q1.txt", "qq1.txt", "a1",
                             "c1", "a/1"]),
    "negation and parents": (["/*", "!/keep/", "/keep/*", "!/keep/this", "!/gone/inner"],
                             ["top", "keep/this", "keep/that", "gone/inner", "keep/sub/f"]),
    "escapes and comments": (["# comment", "\\#hash", "\\!bang", "trailing   ", "x/**"],
                             ["#hash", "!bang", "trailing", "# comment", "x/y/z", "x"]),
}


def git_ignored(tmp: Path, patterns: list[str], paths: list[str]) -> set[str]:
    """What git itself ignores with ``patterns`` as the top-level .gitignore."""
    subprocess.run(["git", "init", "--quiet", str(tmp)], check=True)
    (tmp / ".gitignore").write_text("\n".join(patterns) + "\n")
    result = subprocess.run(["git", "-C", str(tmp), "check-ignore", "--no-index", "--stdin"],
                            input="\n".join(paths) + "\n", capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr  # 1: nothing ignored
    return set(result.stdout.split())


def ours_ignored(patterns: list[str], paths: list[str]) -> set[str]:
    rules = packager.FuncIgnore(patterns)
    return {path for path in paths if rules.ignored(path)}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_funcignore_is_read_as_git_reads_gitignore(tmp_path):
    patterns = (REPO / ".funcignore").read_text().splitlines()
    assert ours_ignored(patterns, SAMPLE_PATHS) == git_ignored(tmp_path, patterns, SAMPLE_PATHS)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("case", PATTERN_CASES)
def test_gitignore_rules_agree_with_git(tmp_path, case):
    patterns, paths = PATTERN_CASES[case]
    assert ours_ignored(patterns, paths) == git_ignored(tmp_path, patterns, paths)


# --- the package's contents --------------------------------------------------------------------


def needed_by_the_app() -> set[str]:
    """What the app needs at run time, listed without .funcignore: the entry point and host
    configuration, its two packages (code and the page's static files), the model and manifest."""
    needed = {"function_app.py", "host.json", "requirements.txt", "model/emnist_edge.pt",
              "model/manifest.json"}
    for package in ("functions", "shared"):
        needed |= {path.relative_to(REPO).as_posix() for path in (REPO / package).rglob("*")
                   if path.is_file() and "__pycache__" not in path.parts
                   and path.name != ".DS_Store"}
    return needed


def test_package_carries_the_app_and_nothing_else(built):
    folder, _ = built
    files = files_under(folder)
    needed = needed_by_the_app()
    assert {name for name in app_part(files) if not built_by_the_packager(name)} == needed
    assert {name for name in app_part(files) if built_by_the_packager(name)} == {
        ".funcignore", *(bytecode_of(name) for name in needed if name.endswith(".py"))}
    for absent in ("tests/", "infra/", "loadtests/", "bench/", "local/", ".github/", ".venv/",
                   "node_modules/", "artifacts/", ".gpu/", "dist/"):
        assert not any(name.startswith(absent) for name in files), absent
    assert not {"model/train.py", "model/__init__.py", "local.settings.json"} & files


def test_every_packaged_file_is_one_funcignore_allows(built):
    folder, _ = built
    rules = packager.FuncIgnore.read(REPO / ".funcignore")
    copied = [name for name in files_under(folder) if not built_by_the_packager(name)]
    assert [name for name in copied if rules.ignored(name)] == []


def pyc_flags(path: Path) -> int:
    """The PEP 552 flags word of a .pyc: 0 timestamp-checked, 1 unchecked hash, 3 checked."""
    return int.from_bytes(path.read_bytes()[4:8], "little")


def test_every_module_has_bytecode_that_a_read_only_package_can_use(built):
    """A timestamp-checked .pyc is stale once the zip has reset its source's mtime, and Python
    cannot write a fresh one into the read-only package: every start would compile again."""
    folder, _ = built
    sources = [path for path in folder.rglob("*.py") if "__pycache__" not in path.parts]
    assert sources
    uncompiled, checked = [], []
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.is_file():
            uncompiled.append(source.relative_to(folder).as_posix())
        elif pyc_flags(cached) != 0b01:
            checked.append(source.relative_to(folder).as_posix())
    # pip cannot compile the few files that are not Python 3.11 either; nothing imports them.
    assert [name for name in uncompiled if not name.endswith("py312_intrinsics.py")] == []
    assert checked == []


def test_azd_finds_a_funcignore_in_the_staged_folder_that_keeps_the_bytecode(built):
    folder, archive = built
    rules = packager.FuncIgnore.read(folder / ".funcignore")
    assert [name for name in files_under(folder) if rules.ignored(name)] == [".funcignore"]
    if archive is not None:
        with zipfile.ZipFile(archive) as bundle:
            assert ".funcignore" not in bundle.namelist()


def test_zip_holds_the_staged_tree_with_host_json_at_its_root(built):
    folder, archive = built
    if archive is None:
        pytest.skip("prebuilt package without its zip")
    with zipfile.ZipFile(archive) as bundle:
        names = {info.filename for info in bundle.infolist() if not info.is_dir()}
        assert names == files_under(folder) - {".funcignore"}
        assert "host.json" in names and "function_app.py" in names
        with (folder / "model" / "emnist_edge.pt").open("rb") as model:
            assert bundle.read("model/emnist_edge.pt") == model.read()


def test_torch_is_pinned_to_its_cpu_build_for_the_package():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    pinned = packager.cpu_requirements(lines)
    torch = [line for line in pinned if line.startswith("torch==")]
    assert len(torch) == 1 and torch[0].endswith("+cpu")
    version = torch[0].removeprefix("torch==").removesuffix("+cpu")
    assert f"torch=={version}" in lines
    assert [line for line in pinned if not line.startswith("torch==")] == [
        line for line in lines if not line.startswith("torch==")]
    with pytest.raises(ValueError, match="pin torch"):
        packager.cpu_requirements(["torch>=2"])
    assert packager.cpu_requirements(["torch==2.1.0 ; sys_platform == 'linux'"]) == [
        "torch==2.1.0+cpu; sys_platform == 'linux'"]


def test_pruning_leaves_out_build_and_test_files_only():
    rules = packager.FuncIgnore(packager.PRUNED)
    for gone in ("torch/include/ATen/ATen.h", "torch/test/Dict_test", "torch/bin/test_jit",
                 "torch/bin/TCPStoreTest", "torch/bin/protoc", "numpy/_core/lib/libnpymath.a",
                 "numpy/_core/tests/test_api.py", "sympy/core/tests/test_basic.py"):
        assert rules.ignored(gone), gone
    # `import torch` fails without torch_shm_manager (torch/__init__.py looks for it).
    for kept in ("torch/bin/torch_shm_manager", "torch/lib/libtorch_cpu.so", "numpy/testing/x.py",
                 "torch/testing/_comparison.py", "PIL/Image.py"):
        assert not rules.ignored(kept), kept


def test_pip_installs_linux_cpython_311_wheels_with_torch_from_the_cpu_index(tmp_path):
    command = packager.pip_command(tmp_path / "r.txt", tmp_path / "site-packages")
    joined = " ".join(command)
    assert "--target " + str(tmp_path / "site-packages") in joined
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in joined
    assert "--platform manylinux_2_28_x86_64" in joined
    assert "--platform manylinux2014_x86_64" in joined
    assert "--python-version 3.11 --implementation cp --only-binary :all:" in joined
    # The wheels are for the Python that function-app.bicep runs.
    site = BicepFile.load(INFRA / "main.bicep").module_file("functionApp")
    [app] = site.resources_of("Microsoft.Web/sites")
    version = app.value()["properties"]["functionAppConfig"]["runtime"]["version"]
    assert version == packager.TARGET_PYTHON


# --- the app, from the package alone -----------------------------------------------------------

PROBE = r'''
import importlib.util
import io
import json
import sys
from pathlib import Path

package = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(package))  # as the Functions worker puts the app's root first

import function_app

functions = {fn.get_function_name(): json.loads(fn.get_function_json())["bindings"]
             for fn in function_app.app.get_functions()}
if sys.argv[2] == "index":
    exporter = sys.modules.get("azure.monitor.opentelemetry.exporter")
    print(json.dumps({"functions": functions,
                      "telemetry": function_app.sdk is not None,
                      "exporter": getattr(exporter, "__file__", None)}))
    sys.exit()

from PIL import Image, ImageDraw
from shared.classifier import classify_images
from shared.config import Settings
from shared.model_loader import ModelRegistry, ModelSpec

image = Image.new("RGB", (280, 280), "white")
ImageDraw.Draw(image).line([(70, 56), (210, 56), (126, 238)], fill="black", width=18,
                           joint="curve")
buffer = io.BytesIO()
image.save(buffer, format="PNG")
settings = Settings.from_env()
model = ModelRegistry().get(ModelSpec.of(settings))
[prediction] = classify_images([buffer.getvalue()], 3, model, settings)

modules = {name: getattr(sys.modules[name], "__file__", None)
           for name in ("function_app", "functions", "functions.http_api", "shared",
                        "shared.config", "torch", "azure.functions")}
print(json.dumps({
    "functions": functions,
    "modules": modules,
    "sys_path": sys.path,
    "label": prediction.label,
    "training_code": importlib.util.find_spec("model.train") is not None,
}))
'''
EXPECTED_FUNCTIONS = json.loads((Path(__file__).parent / "indexed_functions.json").read_text())


@pytest.fixture(scope="module")
def run_probe(built, tmp_path_factory):
    """Run PROBE in a clean virtualenv against the package: ``(mode, **settings) -> its JSON``."""
    folder, _ = built
    venv = tmp_path_factory.mktemp("clean-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    dependencies = folder / SITE_PACKAGES
    if not dependencies.is_dir():
        dependencies = Path(sysconfig.get_paths()["purelib"])  # see the module docstring
    (site / "dependencies.pth").write_text(f"{dependencies}\n")
    script = tmp_path_factory.mktemp("probe") / "probe.py"
    script.write_text(PROBE)

    def run(mode: str, platform: dict[str, str] | None = None, **settings: str) -> dict:
        environment = {key: value for key, value in os.environ.items()
                       if key in ("PATH", "LANG", "TMPDIR") or key.startswith("OPENBLAS_")}
        environment["HOME"] = str(venv)
        environment["EMNIST_EDGE_TORCH_THREADS"] = "1"
        environment.update({f"EMNIST_EDGE_{key.upper()}": value for key, value in settings.items()})
        environment.update(platform or {})
        # -I: no PYTHON* variables, no user site-packages, neither the script's folder nor the
        # working directory on sys.path; run from elsewhere than the work tree.
        result = subprocess.run([str(python), "-I", "-B", str(script), str(folder), mode],
                                cwd=venv, env=environment, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(scope="module")
def probe(run_probe) -> dict:
    return run_probe("full")


def test_app_code_comes_from_the_package_and_the_work_tree_is_not_on_sys_path(probe, built):
    folder, _ = built
    for name in ("function_app", "functions", "functions.http_api", "shared", "shared.config"):
        assert Path(probe["modules"][name]).resolve().is_relative_to(folder), name
    if (folder / SITE_PACKAGES).is_dir():  # a full build: the dependencies are the package's
        for name in ("torch", "azure.functions"):
            assert Path(probe["modules"][name]).resolve().is_relative_to(folder), name
    entries = [Path(entry).resolve() for entry in probe["sys_path"] if entry]
    assert REPO.resolve() not in entries
    assert entries[0] == folder


def test_app_runs_without_the_training_code(probe):
    assert probe["training_code"] is False


def test_the_package_indexes_exactly_the_expected_functions(probe):
    """Names, routes, methods, auth levels, trigger types and sources, connection names: what
    Azure sees, compared with tests/infra/indexed_functions.json."""
    assert probe["functions"] == EXPECTED_FUNCTIONS["functions"]


def test_without_the_public_demo_no_anonymous_post_is_indexed(run_probe):
    functions = run_probe("index", public_demo="off")["functions"]
    assert sorted(functions) == EXPECTED_FUNCTIONS["without_public_demo"]
    assert {name: EXPECTED_FUNCTIONS["functions"][name] for name in functions} == functions
    anonymous = {name for name, bindings in functions.items()
                 for b in bindings if b.get("authLevel") == "ANONYMOUS"}
    assert {method for name in anonymous for method in functions[name][0]["methods"]} == {"GET"}


def test_with_application_insights_the_package_installs_its_exporters(run_probe, tmp_path):
    """As in Azure (function-app.bicep's two settings): the root installs Azure Monitor's
    exporters from the package's own dependencies, and indexes the same functions. Nothing is
    sent: the process ends before the first export, and Microsoft's statsbeat is off."""
    indexed = run_probe("index", platform={**load_infra_module("coldstart").APPLICATION_INSIGHTS,
                                           "TMPDIR": str(tmp_path)})
    assert indexed["telemetry"] is True
    assert indexed["exporter"]
    assert indexed["functions"] == EXPECTED_FUNCTIONS["functions"]


def test_the_blob_trigger_is_the_one_the_event_grid_subscription_calls(probe):
    blobs = {name: bindings[0] for name, bindings in probe["functions"].items()
             if bindings[0]["type"] == "blobTrigger"}
    # The Event Grid subscription calls Host.Functions.<blobTriggerFunctionName>, on batches/.
    main = BicepFile.load(INFRA / "main.bicep")
    expected = main.lookup("blobTriggerFunctionName")
    assert set(blobs) == {expected}
    assert blobs[expected]["path"].startswith(main.lookup("batchesContainerName") + "/")
    assert (blobs[expected]["source"], blobs[expected]["connection"]) == (
        "EventGrid", "AzureWebJobsStorage")


def test_app_serves_the_shipped_model_from_the_package(probe):
    assert probe["label"] == "7"


def test_azd_ships_the_same_package():
    from ruamel.yaml import YAML

    config = YAML(typ="safe").load((REPO / "azure.yaml").read_text())
    api = config["services"]["api"]
    assert (api["host"], api["language"], api["project"]) == ("function", "python", ".")
    assert api["remoteBuild"] is False  # a remote build would install PyPI's CUDA torch
    assert api["dist"] == "dist/app"  # infra/package.py's staging folder (--out dist)
    for hook in api["hooks"]["prepackage"].values():
        assert "infra/package.py --no-zip" in hook["run"]
