"""The project as a package: pyproject declares what the code imports, the requirements
files say the same, the wheel holds the app and its data, and it installs and runs in a
fresh virtual environment (offline: the build backend comes from the dev tools)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DISTRIBUTION = {"yaml": "pyyaml"}
"""Import name → distribution name, where they differ."""
OPTIONAL = {"huggingface_hub"}
"""Imported only when a feature is turned on, and said when missing (streamchat/spaces.py)."""


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("-r")]


def third_party_imports(files: list[Path]) -> set[str]:
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in ("streamchat", "app")}


PLUGIN = ROOT / "streamchat" / "pytest_plugin.py"
"""Loaded only by pytest (its ``pytest11`` entry point), so pytest is there whenever it is."""


def test_every_runtime_import_is_a_declared_dependency() -> None:
    files = [ROOT / "app.py", *(p for p in (ROOT / "streamchat").rglob("*.py") if "testing" not in p.parts and p != PLUGIN)]
    imported = {DISTRIBUTION.get(name, name) for name in third_party_imports(files)} - OPTIONAL
    declared = names(PYPROJECT["project"]["dependencies"])
    assert imported <= declared, imported - declared
    assert {"httpx2", "uvicorn", "openai", "gradio"} <= imported  # the scan sees imports at all
    assert third_party_imports([PLUGIN]) - {"pytest"} <= declared


def test_the_pytest_plugin_is_registered_for_pytest() -> None:
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {"streamchat": "streamchat.pytest_plugin"}


def test_requirements_files_say_what_pyproject_says() -> None:
    project = PYPROJECT["project"]
    assert sorted(requirement_lines(ROOT / "requirements.txt")) == sorted(project["dependencies"])
    dev = [" ".join(line.split()) for line in requirement_lines(ROOT / "requirements-dev.txt")]
    assert sorted(dev) == sorted(project["optional-dependencies"]["dev"])
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert "constraints" not in (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert names(PYPROJECT["build-system"]["requires"]) <= names(dev)  # the wheel test builds offline


def test_no_module_edits_sys_path() -> None:
    """Scripts and benchmarks run as modules (`python -m bench.run`), not by path hacks."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if ".venv" not in path.parts and "sys.path." in path.read_text(encoding="utf-8") and path.name != Path(__file__).name
    ]
    assert offenders == []


@pytest.mark.parametrize("module", ["bench.run", "bench.replay_timing"])
def test_benchmarks_run_as_modules_from_the_checkout(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr


def test_mypy_covers_the_app_scripts_and_benchmarks() -> None:
    assert set(PYPROJECT["tool"]["mypy"]["files"]) >= {"streamchat", "app.py", "scripts", "bench"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("streamchat-*.whl")
    return built


def test_the_wheel_holds_the_package_its_data_and_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        info = next(n for n in files if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "streamchat").rglob("*.py")}
    assert sources <= files, sources - files
    assert {"streamchat/backends/responses.py", "streamchat/testing/faults.py", "streamchat/main.py"} <= files
    bundled = {f"streamchat/data/recordings/{p.name}" for p in (ROOT / "recordings").glob("*.jsonl")}
    assert bundled and bundled <= files
    assert "streamchat/data/assistant_config.yaml" in files
    assert not any(name.startswith(("tests/", "bench/", "scripts/")) for name in files)
    assert "streamchat = streamchat.main:main" in entry_points
    required = names(
        line.removeprefix("Requires-Dist: ")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    )
    assert required == names(PYPROJECT["project"]["dependencies"])


def fresh_venv(path: Path) -> Path:
    """A new virtual environment that sees this machine's packages (nothing downloaded);
    the outer pip installs into it."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], check=True)
    return path / "bin"


def pip_into(bin_dir: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "-q", "--no-deps", *args],
        check=True,
        capture_output=True,
    )


def test_the_wheel_installs_and_runs_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_into(bin_dir, str(wheel))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    result = subprocess.run([str(bin_dir / "streamchat"), "--help"], cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0 and "--replay" in result.stdout, result.stderr
    # Installed, the app finds its default config and recordings in the package.
    probe = "import streamchat.options as o; print(o.DEFAULT_CONFIG.is_file(), len(list(o.DEFAULT_RECORDINGS.glob('*.jsonl'))), o.__file__)"
    out = subprocess.run([str(bin_dir / "python"), "-c", probe], cwd=elsewhere, capture_output=True, text=True, check=True)
    found, recordings, location = out.stdout.split()
    assert found == "True" and int(recordings) == len(list((ROOT / "recordings").glob("*.jsonl")))
    assert str(tmp_path / "venv") in location  # the installed copy, not this checkout


def test_editable_install_works_in_a_fresh_venv(tmp_path: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_into(bin_dir, "--no-build-isolation", "-e", str(ROOT))
    probe = "import streamchat.main, streamchat.options as o; print(o.ROOT)"
    out = subprocess.run([str(bin_dir / "python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == ROOT
    result = subprocess.run([str(bin_dir / "streamchat"), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and "--config" in result.stdout, result.stderr
