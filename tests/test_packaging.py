"""The wheel holds only the ``kvstack`` package and its data, and installs without extras.

One test builds the wheel from a copy of the sources (``pip wheel --no-deps``), checks what is in it,
installs it into a fresh venv with the core dependencies only (PyPI or the pip cache) and runs the
installed ``kvstack``: ``verify --help`` works, ``render`` names the extra it needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
# what the build needs: the project file, the README it points to, the package and the folders its
# symbolic links (kvstack/infra -> ../infra, ...) map into the namespace
SOURCES = ("pyproject.toml", "README.md", "kvstack", "infra", "bench", "alerts", "dashboards")
DATA = {
    "kvstack/py.typed",
    "kvstack/monitoring/alerts/kvstack-rules.yaml",
    "kvstack/monitoring/dashboards/kvstack-kv-capacity.json",
    "kvstack/monitoring/dashboards/kvstack-overview.json",
    "kvstack/infra/models/llama-3.1-8b.json",
    "kvstack/infra/models/llama-3.2-1b.json",
    "kvstack/infra/models/smollm2-135m.json",
}


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path / "dist"
    proc = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
         "-w", str(dist), str(src)]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = dist.glob("kvstack-*.whl")
    return wheel


def test_wheel_holds_only_kvstack_and_installs_without_extras(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {PurePosixPath(n).parts[0] for n in names}
    assert tops == {"kvstack", "kvstack-0.1.0.dist-info"}, tops
    assert names >= DATA, DATA - names
    for name in names:
        parts = PurePosixPath(name).parts
        assert not {"tests", "scripts", "__pycache__"} & set(parts), name
        assert not name.endswith((".sh", ".pyc")), name
    # the GPU kit's calibration shapes are test data, not product data
    assert not {n for n in names if n.startswith("kvstack/infra/models/llama8b")}
    assert not {n for n in names if n.startswith("kvstack/infra/models/llama1b")}
    assert "kvstack/bench/verify.py" in names
    assert "kvstack/infra/cli.py" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    proc = _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    installed = _run([str(python), "-m", "pip", "list", "--format=freeze"]).stdout.lower()
    for extra_package in ("pulumi", "matplotlib", "kubernetes-validate", "grafana-foundation-sdk"):
        assert f"\n{extra_package}==" not in f"\n{installed}", extra_package

    kvstack = env_dir / "bin" / "kvstack"
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    help_run = _run([str(kvstack), "verify", "--help"], cwd=tmp_path, env=clean_env)
    assert help_run.returncode == 0, help_run.stderr
    assert "--stack-outputs" in help_run.stdout
    assert "pip install 'kvstack[plots]'" in " ".join(help_run.stdout.split())  # where the PNGs come from

    out = tmp_path / "rendered"
    render = _run(
        [str(kvstack), "render", "--stack", "dev", "--project-dir", str(ROOT), "--out", str(out)],
        cwd=tmp_path,
        env=clean_env,
    )
    assert render.returncode == 2, render.stdout + render.stderr
    assert "pip install 'kvstack[infra]'" in render.stderr
    assert "Traceback" not in render.stderr
    assert len(render.stderr.strip().splitlines()) == 1, render.stderr
    assert not out.exists()
