"""The package as a user gets it: a wheel with everything inside, every import declared."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "patchmatch": "pypatchmatch", "yaml": "pyyaml"}


def third_party_imports() -> set[str]:
    """Top-level names the shipped code imports that are neither stdlib nor ours."""
    names: set[str] = set()
    for pkg in ("exquisite_store", "viewer"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return {
        n
        for n in names
        if n not in sys.stdlib_module_names and n not in ("exquisite_store", "viewer")
    }


def declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps}


def test_every_imported_package_is_declared() -> None:
    missing = sorted(
        name
        for name in third_party_imports()
        if DISTRIBUTIONS.get(name, name).lower() not in declared()
    )
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_the_offline_fill_is_pinned() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.fullmatch(r"pypatchmatch==[\d.]+", d) for d in deps), deps


@pytest.mark.slow
def test_wheel_installs_and_runs_the_demo_outside_the_checkout(tmp_path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("exquisite_store-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "elsewhere"  # an empty directory outside the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EXQ_STORE")}
    exq = str(venv / "bin" / "exq")
    demo = subprocess.run(
        [exq, "--store", "X", "demo"], cwd=work, env=env, capture_output=True, text=True
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "imported the packaged photo.png" in demo.stdout
    fsck = subprocess.run(
        [exq, "--store", "X", "fsck"], cwd=work, env=env, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert " 0 damaged, 0 missing, 0 bad refs" in fsck.stdout
    # the installed code ran, not the checkout's
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import exquisite_store; print(exquisite_store.__file__)",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert str(venv) in where.stdout
