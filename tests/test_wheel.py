"""The package as users install it: a wheel built from the repository carries the prompts and the
fitted JSON files, and, installed into a fresh virtual environment, answers the seed question
from `qa ask` (the installed package, not this checkout)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile

from .conftest import ROOT, SEED

QUESTION = "Who said GSOMIA scrapping was a misjudgment?"


def test_a_wheel_carries_its_data_and_answers_from_a_fresh_venv(tmp_path):
    # Built from a copy of the source alone: setuptools' build/ folder in a working tree keeps
    # modules that no longer exist and would put them into the wheel.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", ".qa-data", "__pycache__", ".pytest_cache", "results", "runs"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("articles_qa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    prompts = {p.name for p in (ROOT / "prompts").glob("*.txt")}
    assert prompts and {f"qa/prompts/{name}" for name in prompts} <= names
    assert {"qa/answer/answerability.json", "qa/answer/reader.json", "qa/retrieve/ranking.json"} <= names
    modules = {n for n in names if n.startswith("qa/") and n.endswith(".py")}
    assert modules == {str(p.relative_to(ROOT)) for p in (ROOT / "qa").rglob("*.py")}  # the package, nothing stale

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    # The dependencies come from this environment (a path, not its .pth files: this checkout's
    # editable install stays out), so the test needs no download.
    venv_site = next((venv / "lib").glob("python3*/site-packages"))
    (venv_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"QA_DATA_DIR": str(work / "data")}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import qa; print(qa.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    qa = str(venv / "bin" / "qa")
    ingest = subprocess.run([qa, "ingest", str(SEED)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    asked = subprocess.run([qa, "ask", QUESTION], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert asked.returncode == 0 and asked.stdout.splitlines()[0] == "Motegi", asked.stdout + asked.stderr[-2000:]
    assert list(work.iterdir()) == [work / "data"]  # the library's data stays in its folder
