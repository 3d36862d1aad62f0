"""Cold start of the deployment package itself, next to the development venv, in one run.

What Flex Consumption does on a cold start, as far as one machine can: the package (built by
infra/package.py exactly as the deploy workflow builds it, dependencies included) is unpacked
into a fresh folder with the archive's own timestamps and made read-only (Azure mounts it
read-only; the interpreter also gets ``-B``, because file modes do not stop root from writing
fresh bytecode into the folder), then a fresh interpreter that sees only that folder and the
standard library (no project venv, no site-packages: ``python -I -S -B``) does what the host
and worker do:

- ``import function_app``: indexing (the worker imports the entry point to find the functions);
- the first classification through the registered ``classify`` function, a ``func.HttpRequest``
  into the function object (the ASGI app's lifespan loads and warms the model on that call);
- every module compiled from source because its bytecode was missing or stale, counted by
  wrapping the import system's ``source_to_code``: Python cannot write bytecode into a read-only
  package, so each of them is compiled again at every start.

The same child runs from the development venv (work tree on sys.path, bytecode in __pycache__)
as the same-run baseline. Medians of ``--runs`` starts each, after one start each to warm the
file cache. ``--compare-timestamps`` adds the two timestamp-checked alternatives (pip's own
bytecode in a zip with fixed 1980 timestamps, as the package was built before, and with the
files' real timestamps) so that the choice of unchecked-hash bytecode stays measured.
``--application-insights`` starts the package a second way, with the two settings that
infra/app/function-app.bicep gives the app (a connection string to an unreachable endpoint and
the managed identity's authentication string), so that the root installs Azure Monitor's
exporters as it does in Azure: what telemetry adds to a cold start, from starts that alternate
with and without it (the median of the paired differences). Nothing is sent (the child ends
before the first export; Microsoft's statsbeat is off).

    python infra/coldstart.py                       # also part of `make bench`
    python infra/coldstart.py --compare-timestamps  # adds the timestamp-checked variants
    python infra/coldstart.py --application-insights  # adds the package with telemetry on

Prints the figures and writes them to artifacts/bench/coldstart.json. Standard library only.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import py_compile
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "artifacts" / "bench" / "coldstart.json"

_spec = importlib.util.spec_from_file_location("emnist_edge_packager",
                                               Path(__file__).with_name("package.py"))
packager = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = packager  # dataclasses look their module up while building classes
_spec.loader.exec_module(packager)

# The child: one cold start. argv: the app's root, then the site-packages to add (the package's
# .python_packages; none for the dev venv, whose site-packages the interpreter brings itself).
CHILD = r'''
import importlib._bootstrap_external as external
import json
import resource
import sys
import time

started = time.perf_counter()
compiled = []
to_code = external.SourceLoader.source_to_code


def counting_source_to_code(self, data, path, *args, **kwargs):
    compiled.append(path)  # get_code found no usable bytecode for this module
    return to_code(self, data, path, *args, **kwargs)


external.SourceLoader.source_to_code = counting_source_to_code
root = sys.argv[1]
sys.path[:0] = [root, *sys.argv[2:]]  # as the worker puts the app's root first

t0 = time.perf_counter()
import torch  # noqa: E402

t1 = time.perf_counter()
import function_app  # noqa: E402

t2 = time.perf_counter()

import asyncio  # noqa: E402
import io  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import azure.functions as func  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

image = Image.new("RGB", (280, 280), "white")
ImageDraw.Draw(image).line([(70, 56), (210, 56), (126, 238)], fill="black", width=18,
                           joint="curve")
body = io.BytesIO()
image.save(body, format="PNG")
[classify] = [fn for fn in function_app.app.get_functions()
              if fn.get_function_name() == "classify"]
request = func.HttpRequest(method="POST", url="http://localhost/api/classify", body=body.getvalue(),
                           headers={"Content-Type": "image/png"}, params={}, route_params={})
context = SimpleNamespace(invocation_id="coldstart", function_name="classify",
                          function_directory=root, trace_context=None, retry_context=None,
                          thread_local_storage=None)


async def first_answer():
    response = await classify.get_user_function()(request, context)
    answered = time.perf_counter()
    # The root's bridge (function_app.py builds it): ends the app's lifespan (the model's batcher).
    await function_app.bridge.middleware.notify_shutdown()
    return response, answered


t3 = time.perf_counter()
response, t4 = asyncio.run(first_answer())
answer = json.loads(response.get_body())
print(json.dumps({
    "import_torch_s": t1 - t0,
    "import_function_app_s": t2 - t0,
    "first_classification_s": t4 - t3,
    "start_to_first_answer_s": t4 - started,
    "compiled_from_source": len(compiled),
    "compiled_examples": sorted(compiled)[:10],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "status": response.status_code,
    "label": answer["results"][0]["top_k"][0]["label"] if response.status_code == 200 else None,
    "torch": [torch.__version__, torch.__file__],
    "function_app": function_app.__file__,
    "modules": len(sys.modules),
    "telemetry": function_app.sdk is not None,
}))
if function_app.sdk is not None:
    # No exit-time flush of the spans: it would ask a managed identity for a token (no IMDS
    # here) to send them to an endpoint that does not exist. The figures are printed.
    sys.stdout.flush()
    import os

    os._exit(0)
'''

# The app settings that make the root install Azure Monitor's exporters (--application-insights).
APPLICATION_INSIGHTS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=https://127.0.0.1:9/"),
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING":
        "ClientId=11111111-2222-3333-4444-555555555555;Authorization=AAD",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
}


@dataclass(frozen=True)
class Variant:
    """A way to build the package: how its bytecode is checked, and the zip's timestamps."""

    name: str
    invalidation: py_compile.PycInvalidationMode
    keep_mtimes: bool


TELEMETRY = "package + Application Insights"
SHIPPED = Variant("package (unchecked-hash)", py_compile.PycInvalidationMode.UNCHECKED_HASH,
                  keep_mtimes=False)
TIMESTAMP_VARIANTS = (
    Variant("timestamp .pyc, 1980 zip",
            py_compile.PycInvalidationMode.TIMESTAMP, keep_mtimes=False),
    Variant("timestamp .pyc, real mtimes",
            py_compile.PycInvalidationMode.TIMESTAMP, keep_mtimes=True),
)


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


def extract_read_only(archive: Path, folder: Path) -> int:
    """Unpack ``archive`` into ``folder`` with each entry's own timestamp and mode, then take
    away every write permission (as Azure mounts the package); the bytes unpacked."""
    size = 0
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            path = Path(bundle.extract(info, folder))
            stamp = time.mktime((*info.date_time, 0, 0, -1))  # zip keeps local time
            os.utime(path, (stamp, stamp))
            os.chmod(path, (info.external_attr >> 16) & 0o555 or 0o444)
            size += info.file_size
    for dirpath, _, _ in os.walk(folder, topdown=False):
        os.chmod(dirpath, 0o555)
    return size


def make_writable(folder: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(Path(dirpath) / name, stat.S_IRUSR | stat.S_IWUSR)
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o755)


def start(python: list[str], root: Path, extra_paths: list[Path], script: Path,
          settings: dict[str, str] | None = None) -> dict:
    environment = {key: value for key, value in os.environ.items()
                   if key in ("PATH", "LANG", "TMPDIR", "HOME")}
    environment["EMNIST_EDGE_TORCH_THREADS"] = "1"
    environment.update(settings or {})
    result = subprocess.run([*python, str(script), str(root), *map(str, extra_paths)],
                            cwd=script.parent, env=environment, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"the cold start failed ({' '.join(python)}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(python: list[str], root: Path, extra: list[Path], script: Path, runs: int) -> dict:
    start(python, root, extra, script)  # warms the file cache (and writes the dev venv's .pyc)
    return summary([start(python, root, extra, script) for _ in range(runs)])


def measure_pair(python: list[str], root: Path, extra: list[Path], script: Path, runs: int,
                 settings: dict[str, str]) -> tuple[dict, dict, dict]:
    """Starts without and with ``settings``, alternating, so that both see the same machine:
    (the medians of each, the medians of the differences of each pair)."""
    start(python, root, extra, script)
    start(python, root, extra, script, settings)
    pairs = [(start(python, root, extra, script), start(python, root, extra, script, settings))
             for _ in range(runs)]
    differences = {key: statistics.median(b[key] - a[key] for a, b in pairs)
                   for key, value in pairs[0][0].items()
                   if isinstance(value, float | int) and not isinstance(value, bool)}
    return summary([a for a, _ in pairs]), summary([b for _, b in pairs]), differences


def summary(samples: list[dict]) -> dict:
    figures = {key: statistics.median(sample[key] for sample in samples)
               for key, value in samples[0].items() if isinstance(value, float | int)}
    first = samples[0]
    return {**figures, "label": first["label"], "status": first["status"], "torch": first["torch"],
            "function_app": first["function_app"], "compiled_examples": first["compiled_examples"],
            "telemetry": first["telemetry"]}


def build(staging: Path, variant: Variant, archive: Path) -> None:
    """Compile ``staging``'s bytecode the variant's way and zip it."""
    if variant.invalidation is not SHIPPED.invalidation:
        compileall.compile_dir(staging, quiet=2, force=True, workers=0,
                               invalidation_mode=variant.invalidation)
    packager.write_zip(staging, archive, keep_mtimes=variant.keep_mtimes)


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed starts each (median)")
    parser.add_argument("--torch-index", default=None,
                        help="index of torch's CPU build (default: PyTorch's if reachable, else "
                             "pip's own configuration; the packager checks it is the CPU build)")
    parser.add_argument("--compare-timestamps", action="store_true",
                        help="also the timestamp-checked variants (two more zips)")
    parser.add_argument("--application-insights", action="store_true",
                        help="also the package with Application Insights' settings (exporters on)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    torch_index = args.torch_index
    if torch_index is None:
        torch_index = packager.TORCH_CPU_INDEX if reachable(packager.TORCH_CPU_INDEX) else ""
        if not torch_index:
            print(f"{packager.TORCH_CPU_INDEX} is unreachable: torch from pip's configured index")

    dev_python = [sys.executable, "-I"]
    package_python = [getattr(sys, "_base_executable", sys.executable), "-I", "-S", "-B"]
    with tempfile.TemporaryDirectory(prefix="emnist-edge-coldstart-") as tmp:
        work = Path(tmp)
        script = work / "coldstart_child.py"
        script.write_text(CHILD)
        staging = work / "app"
        began = time.perf_counter()
        packager.stage(ROOT, staging, "pip", skip=[work], torch_index=torch_index or None)
        print(f"built {staging} in {time.perf_counter() - began:.0f} s")
        unpacked_staged = folder_size(staging)
        results: dict[str, dict] = {}
        telemetry_cost: dict[str, float] = {}
        sizes: dict[str, dict] = {}
        # The shipped variant first: the timestamp ones recompile the staging folder.
        for variant in (SHIPPED, *(TIMESTAMP_VARIANTS if args.compare_timestamps else ())):
            archive = work / f"{len(results)}.zip"
            build(staging, variant, archive)
            folder = work / f"run-{len(results)}"
            unpacked = extract_read_only(archive, folder)
            sizes[variant.name] = {"zipped_mb": archive.stat().st_size / 1e6,
                                   "unpacked_mb": unpacked / 1e6}
            try:
                site = [folder / packager.SITE_PACKAGES]
                if variant is SHIPPED and args.application_insights:
                    results[variant.name], results[TELEMETRY], telemetry_cost = measure_pair(
                        package_python, folder, site, script, args.runs,
                        {**APPLICATION_INSIGHTS, "TMPDIR": str(work)})
                else:
                    results[variant.name] = measure(package_python, folder, site, script,
                                                    args.runs)
            finally:
                make_writable(folder)
                shutil.rmtree(folder)
                archive.unlink()
        results["development venv"] = measure(dev_python, ROOT, [], script, args.runs)

    package, dev = results[SHIPPED.name], results["development venv"]
    for name, result in results.items():
        if result["status"] != 200:
            raise SystemExit(f"{name}: the first classification answered {result['status']}")
        if result["telemetry"] != (name == TELEMETRY):
            raise SystemExit(f"{name}: Application Insights' exporters installed: "
                             f"{result['telemetry']}")
        if "+cpu" not in result["torch"][0]:
            raise SystemExit(f"{name}: torch {result['torch'][0]} is not the CPU build")
    rows = [("import torch (s)", "import_torch_s"),
            ("import function_app (s), torch included", "import_function_app_s"),
            ("first classification (s), model load included", "first_classification_s"),
            ("process start to first answer (s)", "start_to_first_answer_s"),
            ("modules compiled from source (stale bytecode)", "compiled_from_source"),
            ("peak resident memory (MB)", "peak_rss_mb")]
    names = list(results)
    width = max(len(label) for label, _ in rows)
    print(f"\ncold start, median of {args.runs} starts each, same run")
    print(" " * width + "".join(f" | {name:>28}" for name in names))
    for label, key in rows:
        print(f"{label:<{width}}" + "".join(f" | {results[n][key]:>28.2f}" for n in names))
    ratio = package["first_classification_s"] / dev["first_classification_s"]
    print(f"first classification, package / dev venv: {ratio:.2f}x (target <= 1.2x)")
    print(f"indexing, package / dev venv: "
          f"{package['import_function_app_s'] / dev['import_function_app_s']:.2f}x")
    if TELEMETRY in results:
        for label, key, unit in (("indexing", "import_function_app_s", "s"),
                                 ("process start to first answer", "start_to_first_answer_s", "s"),
                                 ("peak resident memory", "peak_rss_mb", "MB")):
            print(f"{label}, Application Insights' exporters add (median of the "
                  f"{args.runs} paired starts): {telemetry_cost[key]:+.2f} {unit}")
    for name, size in sizes.items():
        print(f"{name}: {size['zipped_mb']:.0f} MB zipped, {size['unpacked_mb']:.0f} MB unpacked")
    print(f"staged folder: {unpacked_staged / 1e6:.0f} MB")
    report = {"runs": args.runs, "results": results, "sizes": sizes,
              "application_insights_cost": telemetry_cost or None,
              "first_classification_ratio": ratio, "python": sys.version.split()[0]}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
