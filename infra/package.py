"""Build the Azure Functions deployment package: the app as .funcignore allows it, plus its
dependencies for Linux in .python_packages/lib/site-packages with the CPU-only torch.

One packager for every path to Azure: the deploy workflow, azd (prepackage hook) and the tests all
run this file, so the package the tests inspect is the package that ships. Standard library only.

Why local build: Flex Consumption's remote build runs `pip install -r requirements.txt` with
plain PyPI, whose torch wheel for Linux is the CUDA build (gigabytes of GPU libraries an Azure
Functions instance cannot use), and a remote build has a time limit that torch strains. Microsoft's
"Python build options" article lists local build into ./.python_packages/lib/site-packages for
this case; torch comes from PyTorch's CPU index, pinned to the version requirements.txt pins.

    python infra/package.py                 # dist/app/ and dist/emnist-edge.zip, deps included
    python infra/package.py --deps none     # app files only (the offline tests supply the deps)

Bytecode: Flex Consumption runs the app from the package, read-only, so Python can never write a
.pyc there, and a .pyc that is not valid costs a compile of its module at every cold start. pip's
.pyc files are timestamp-checked against their source's mtime and size, which a zip cannot keep
(it stores local time in 2-second steps; write_zip fixes every entry at 1980-01-01 on purpose,
for reproducible archives). So everything is compiled again here with
``--invalidation-mode unchecked-hash`` (PEP 552): such a .pyc is used as it is, whatever the
timestamps, which is safe because nothing in a read-only package changes after the build.
``python infra/coldstart.py`` measures the difference (infra/README.md has the figures).
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE_PACKAGES = Path(".python_packages/lib/site-packages")
# PyTorch's index of CPU-only wheels: the same version numbers as PyPI's, with a +cpu local label.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What Flex Consumption runs: Linux x86_64, CPython 3.11 (functionAppConfig.runtime in
# infra/app/function-app.bicep), glibc 2.28 or later. pip expands only the legacy manylinux2014
# tag to older ones, so every glibc from 2.28 (torch 2.13's wheels) down to 2.17 is listed.
TARGET_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)),
    "manylinux2014_x86_64",
)
TARGET_PYTHON = "3.11"
ZIP_NAME = "emnist-edge.zip"
# What the app never loads, left out of the dependencies (paths relative to site-packages, '**'
# for any depth): C/C++ headers and static libraries (for building extensions), torch's C++ test
# programs (torch/test/, and those in torch/bin/ with protoc; `import torch` looks for
# torch/bin/torch_shm_manager, which stays), and the packages' own test suites.
# tests/infra/test_package.py imports, indexes and classifies from a package built this way.
PRUNED = ("torch/include/", "torch/test/", "torch/bin/test_*", "torch/bin/*Test",
          "torch/bin/protoc*", "**/*.a", "**/tests/")
# azd zips the staged folder itself and applies the .funcignore it finds there, or, without one,
# its defaults, which drop every __pycache__ (azd: "Configure service packaging file exclusions",
# https://learn.microsoft.com/azure/developer/azure-developer-cli/service-packaging-ignore-files).
# So the staged folder gets one that leaves out nothing but itself; write_zip reads it too.
STAGED_FUNCIGNORE = """# Written by infra/package.py: the package is complete as staged.
/.funcignore
"""


# --- .funcignore: gitignore syntax -------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    source: str


def _glob_to_regex(glob: str) -> str:
    """The regex for one gitignore glob over a '/'-separated path (no leading or trailing '/')."""
    out: list[str] = []
    i = 0
    n = len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                at_start = i == 0 or glob[i - 1] == "/"
                at_end = i + 2 == n or glob[i + 2] == "/"
                if at_start and at_end:
                    if i + 2 == n:
                        out.append(".*")  # 'a/**': everything inside a
                        i += 2
                    else:
                        out.append("(?:.*/)?")  # '**/b' or 'a/**/b': zero or more folders
                        i += 3
                    continue
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith(("[!", "[^"), i) else i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_rule(line: str) -> Rule | None:
    """One .funcignore line as a rule; None for blanks and comments."""
    text = line.rstrip("\n").rstrip("\r")
    # Trailing spaces are dropped unless escaped with a backslash.
    stripped = text.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(text):
        stripped += " "
    text = stripped
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    if negate or text.startswith(("\\!", "\\#")):
        text = text[1:]
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    # A slash at the start or in the middle anchors the pattern to the .funcignore's folder;
    # without one it matches a name at any depth.
    anchored = "/" in text
    text = text.lstrip("/")
    prefix = "" if anchored else "(?:.*/)?"
    return Rule(re.compile(f"^{prefix}{_glob_to_regex(text)}$"), negate, dir_only, line.strip())


class FuncIgnore:
    """The rules of a .funcignore file, applied as git applies a .gitignore at the top folder:
    the last matching rule wins, '!' re-includes, a trailing '/' matches folders only, and nothing
    inside an excluded folder can be re-included."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.rules = [rule for line in lines if (rule := parse_rule(line)) is not None]

    @classmethod
    def read(cls, path: Path) -> FuncIgnore:
        return cls(path.read_text(encoding="utf-8").splitlines())

    def _matches(self, rel: str, is_dir: bool) -> bool:
        ignored = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(rel):
                ignored = not rule.negate
        return ignored

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        """Whether the '/'-separated path ``rel`` (relative to the root) is left out."""
        parts = rel.strip("/").split("/")
        for depth in range(1, len(parts)):
            if self._matches("/".join(parts[:depth]), True):
                return True
        return self._matches("/".join(parts), is_dir)


def app_files(root: Path, ignore: FuncIgnore, skip: Iterable[Path] = ()) -> Iterator[str]:
    """'/'-separated paths of the files under ``root`` that the package carries, sorted.

    ``skip`` names folders never copied whatever .funcignore says: the output folder, and the
    work tree's own .python_packages (the dependencies are built fresh)."""
    skipped = {path.resolve() for path in skip}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        rel_here = here.relative_to(root).as_posix()
        rel_here = "" if rel_here == "." else rel_here + "/"
        kept = []
        for name in sorted(dirs):
            if (here / name).resolve() in skipped or ignore.ignored(rel_here + name, True):
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            if (here / name).is_symlink() or ignore.ignored(rel_here + name, False):
                continue
            yield rel_here + name


# --- dependencies ------------------------------------------------------------------------------


_TORCH_PIN = re.compile(r"^torch\s*==\s*(?P<version>[0-9][0-9A-Za-z.]*)\s*(?P<rest>(?:;.*)?)$")


def cpu_requirements(lines: Iterable[str]) -> list[str]:
    """requirements.txt with torch pinned to the CPU-only build of the same version.

    ``torch==2.13.0`` becomes ``torch==2.13.0+cpu``, which only PyTorch's CPU index has, so pip
    cannot fall back to PyPI's CUDA build. torch must be pinned with '==' for that."""
    out: list[str] = []
    found = False
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if re.match(r"^torch(?![A-Za-z0-9_.-])", line, re.IGNORECASE):
            match = _TORCH_PIN.match(line)
            if match is None:
                raise ValueError(f"pin torch with '==' to package its CPU build: {raw.strip()!r}")
            version, rest = match["version"], match["rest"]
            if "+" not in version:
                version += "+cpu"
            out.append(f"torch=={version}{rest}")
            found = True
        else:
            out.append(raw.rstrip("\n"))
    if not found:
        raise ValueError("requirements.txt has no torch requirement to pin to its CPU build")
    return out


def pip_command(requirements: Path, target: Path, torch_index: str | None = TORCH_CPU_INDEX,
                python: str = sys.executable) -> list[str]:
    """The pip install of the app's dependencies for Flex Consumption (Linux, CPython 3.11), from
    wheels only, into ``target``, with torch from ``torch_index`` (None: wherever pip's own
    configuration finds torch==X+cpu, such as a local wheel folder given as find-links)."""
    command = [python, "-m", "pip", "install", "--requirement", str(requirements),
               "--target", str(target)]
    if torch_index:
        command += ["--extra-index-url", torch_index]
    for platform in TARGET_PLATFORMS:
        command += ["--platform", platform]
    return [*command, "--python-version", TARGET_PYTHON, "--implementation", "cp",
            "--only-binary", ":all:", "--no-input"]


def install_dependencies(root: Path, staging: Path, torch_index: str | None) -> None:
    target = staging / SITE_PACKAGES
    target.mkdir(parents=True, exist_ok=True)
    requirements = cpu_requirements(
        (root / "requirements.txt").read_text(encoding="utf-8").splitlines()
    )
    with tempfile.TemporaryDirectory() as tmp:
        pinned = Path(tmp) / "requirements-cpu.txt"
        pinned.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        subprocess.run(pip_command(pinned, target, torch_index), check=True)
    torch_dirs = sorted(target.glob("torch-*.dist-info"))
    if not torch_dirs or "+cpu" not in torch_dirs[0].name:
        raise SystemExit(f"expected the CPU-only torch in {target}, found {torch_dirs}")
    cuda = sorted(path.name for path in target.glob("nvidia*"))
    if cuda:
        raise SystemExit(f"CUDA libraries found in the package: {cuda}")
    prune(target)


def prune(site_packages: Path) -> int:
    """Remove what PRUNED names from ``site_packages``; the bytes removed."""
    rules = FuncIgnore(PRUNED)
    removed = 0
    for folder, dirs, files in os.walk(site_packages, topdown=True):
        here = Path(folder)
        rel = here.relative_to(site_packages).as_posix()
        prefix = "" if rel == "." else rel + "/"
        for name in list(dirs):
            if rules.ignored(prefix + name, True):
                removed += sum(f.stat().st_size for f in (here / name).rglob("*") if f.is_file())
                shutil.rmtree(here / name)
                dirs.remove(name)
        for name in files:
            if rules.ignored(prefix + name, False):
                removed += (here / name).stat().st_size
                (here / name).unlink()
    return removed


def compile_bytecode(staging: Path) -> None:
    """Compile every .py in ``staging`` for the target Python, as unchecked-hash .pyc files (see
    the module docstring), replacing pip's timestamp-checked ones."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != TARGET_PYTHON:
        raise SystemExit(f"compile the package with Python {TARGET_PYTHON} (the app's runtime): "
                         f"this is {sys.version.split()[0]}, whose bytecode Azure would not use")
    def compile_tree(folder: Path, quiet: int) -> bool:
        return compileall.compile_dir(
            folder, quiet=quiet, force=True, workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )

    dependencies = staging / SITE_PACKAGES
    for folder in sorted(staging.iterdir()):
        if folder.is_dir() and folder.name != ".python_packages" and not compile_tree(folder, 2):
            raise SystemExit(f"the app's code in {folder} does not compile")
    py_compile.compile(str(staging / "function_app.py"), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    # A few dependency files are not Python 3.11 (torch.testing's py312_intrinsics.py); pip
    # cannot compile them either, they are never imported, and compileall names them (quiet=1).
    if dependencies.is_dir():
        compile_tree(dependencies, 1)


# --- the package -------------------------------------------------------------------------------


def stage(root: Path, staging: Path, deps: str, skip: Iterable[Path] = (),
          torch_index: str | None = TORCH_CPU_INDEX) -> list[str]:
    """Lay the package out in ``staging`` (emptied first); the app files it copied."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    ignore = FuncIgnore.read(root / ".funcignore")
    files = list(app_files(root, ignore, [staging, root / ".python_packages", *skip]))
    for rel in ("function_app.py", "host.json", "requirements.txt"):
        if rel not in files:
            raise SystemExit(f"{rel} is missing from the package: check .funcignore")
    for rel in files:
        destination = staging / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, destination)
    if deps == "pip":
        install_dependencies(root, staging, torch_index)
    compile_bytecode(staging)
    (staging / ".funcignore").write_text(STAGED_FUNCIGNORE, encoding="utf-8")
    return files


def write_zip(staging: Path, archive: Path, keep_mtimes: bool = False) -> int:
    """Zip ``staging``'s contents (not the folder itself: host.json at the root) as its own
    .funcignore allows, in a stable order with fixed timestamps so the same tree gives the same
    archive (``keep_mtimes``: the files' own, as zip keeps them, for infra/coldstart.py's
    comparison); its file count."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    ignore = FuncIgnore.read(staging / ".funcignore")
    count = 0
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as bundle:
        for folder, dirs, files in os.walk(staging):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                rel = path.relative_to(staging).as_posix()
                if ignore.ignored(rel):
                    continue
                stamp = (time.localtime(path.stat().st_mtime)[:6] if keep_mtimes
                         else (1980, 1, 1, 0, 0, 0))
                info = zipfile.ZipInfo(rel, stamp)
                info.external_attr = (path.stat().st_mode & 0xFFFF) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as source, bundle.open(info, "w") as sink:
                    shutil.copyfileobj(source, sink, 1024 * 1024)
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the project (default: repo)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: ROOT/dist): app/ and " + ZIP_NAME)
    parser.add_argument("--deps", choices=("pip", "none"), default="pip",
                        help="pip: install requirements.txt (CPU torch) into .python_packages; "
                             "none: app files only")
    parser.add_argument("--torch-index", default=TORCH_CPU_INDEX,
                        help="index of torch's CPU build (default: %(default)s); an empty value "
                             "leaves it to pip's configuration, e.g. a local wheel folder")
    parser.add_argument("--no-zip", action="store_true", help="stage only (azd zips it itself)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out = (args.out or root / "dist").resolve()
    staging = out / "app"
    files = stage(root, staging, args.deps, skip=[out], torch_index=args.torch_index or None)
    print(f"staged {len(files)} app files in {staging}")
    if not args.no_zip:
        count = write_zip(staging, out / ZIP_NAME)
        size = (out / ZIP_NAME).stat().st_size
        print(f"wrote {out / ZIP_NAME}: {count} files, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
