"""No traceback, ever: bad invocations of every subcommand, run through the real ``kvstack`` entry point.

Each bad case exits with the code ``kvstack --help`` documents, prints one clear line naming the flag or
the file, writes nothing, and shows no traceback. An unexpected error is one line too (exit 4), with
the traceback behind ``--debug`` / ``KVSTACK_DEBUG=1``; a bug of ours is never reported as a missing
package, and a missing package of an extra names the extra.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kvstack.cli import EXTRA_OF_IMPORT, EXTRA_OF_SUBCOMMAND, missing_extra

ROOT = Path(__file__).resolve().parents[1]
KVSTACK = Path(sys.executable).with_name("kvstack")


def kvstack(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KVSTACK), *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def python_kvstack(
    code: str, *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kvstack`` after ``code`` ran in the same interpreter (to plant a bug or hide a package)."""
    script = f"import sys\n{code}\nfrom kvstack.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A project folder with the example stacks, and the bad inputs the cases below point at."""
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "a-file").write_text("not a folder\n", encoding="utf-8")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "bad-yaml").mkdir()
    (tmp_path / "bad-yaml" / "00-ok.yaml").write_text(
        "kind: Namespace\nmetadata: {name: x}\n", encoding="utf-8"
    )
    (tmp_path / "bad-yaml" / "01-broken.yaml").write_text("kind: Pod\n  spec: [\n", encoding="utf-8")
    dev = (ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    (tmp_path / "Pulumi.utf16.yaml").write_bytes(dev.encode("utf-16"))
    (tmp_path / "Pulumi.latin1.yaml").write_bytes(dev.replace("#", "# caf\u00e9", 1).encode("latin-1"))
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00\x01binary")
    (tmp_path / "verify.utf16.yaml").write_bytes("endpoint: http://127.0.0.1:9\n".encode("utf-16"))
    return tmp_path


DEV = ("--stack", "dev", "--project-dir", ".")
SMALL = ("--max-model-len", "8", "--kv-cache-gib", "1")
ENDPOINT = ("--endpoint", "http://127.0.0.1:9")  # nothing listens on port 9: the run never gets that far

# (id, argv, exit code, words the one line must contain)
BAD_INVOCATIONS = [
    pytest.param(
        ("render", *DEV, "--out", "a-file"), 2, "--out a-file: is a file", id="render --out is a file"
    ),
    pytest.param(
        ("render", *DEV, "--out", "a-file/sub"), 2, "a-file is a file", id="render --out under a file"
    ),
    pytest.param(
        ("render", *DEV, "--out", "/proc/kvstack-out"),
        2,
        "nothing can be written",
        id="render --out unwritable",
    ),
    pytest.param(
        ("render", *DEV, "--out", "r", "--outputs", "a-folder"),
        2,
        "--outputs a-folder: is a folder",
        id="render --outputs is a folder",
    ),
    pytest.param(
        ("render", *DEV, "--out", "r", "--outputs", "a-file/o.json"),
        2,
        "a-file is a file",
        id="render --outputs under a file",
    ),
    pytest.param(
        ("render", *DEV, "--out", "r", "--outputs", "/proc/x/o.json"),
        2,
        "nothing can be written",
        id="render --outputs unwritable",
    ),
    pytest.param(
        ("render", "--stack", "utf16", "--project-dir", ".", "--out", "r"),
        2,
        "Pulumi.utf16.yaml",
        id="render utf-16 stack",
    ),
    pytest.param(
        ("plan", "--stack", "utf16", "--project-dir", "."), 2, "Pulumi.utf16.yaml", id="plan utf-16 stack"
    ),
    pytest.param(
        ("lint", "--stack", "latin1", "--project-dir", "."), 2, "Pulumi.latin1.yaml", id="lint latin-1 stack"
    ),
    pytest.param(
        ("lint", "--manifests", "bad-yaml"),
        2,
        "01-broken.yaml: not valid YAML: mapping values are not allowed here (line 2",
        id="lint invalid YAML",
    ),
    pytest.param(
        ("lint", "--manifests", "a-file"), 2, "a-file is not a folder", id="lint --manifests a file"
    ),
    pytest.param(
        ("plan", "--model", "binary.json", *SMALL),
        2,
        "binary.json: not JSON text",
        id="plan binary model shape",
    ),
    pytest.param(
        ("plan", "--model", "bad.json", *SMALL), 2, "bad.json: not valid JSON", id="plan model shape not JSON"
    ),
    pytest.param(("plan", "--model", "a-folder", *SMALL), 2, "a-folder", id="plan model shape a folder"),
    pytest.param(
        ("verify", *ENDPOINT, "--out", "a-file"), 2, "--out a-file: is a file", id="verify --out is a file"
    ),
    pytest.param(
        ("verify", *ENDPOINT, "--out", "/proc/kvstack-out"),
        2,
        "nothing can be written",
        id="verify --out unwritable",
    ),
    pytest.param(
        ("verify", *ENDPOINT, "--config", "a-folder", "--out", "r"),
        2,
        "a-folder: cannot read",
        id="verify --config a folder",
    ),
    pytest.param(
        ("verify", *ENDPOINT, "--config", "nope.yaml", "--out", "r"),
        2,
        "nope.yaml: cannot read",
        id="verify --config missing",
    ),
    pytest.param(
        ("verify", "--config", "verify.utf16.yaml", "--out", "r"),
        2,
        "verify.utf16.yaml: not UTF-8",
        id="verify --config utf-16",
    ),
    pytest.param(
        ("verify", *ENDPOINT, "--stack-outputs", "bad.json", "--out", "r"),
        2,
        "bad.json: not valid JSON (expected `pulumi stack output --json`): ",
        id="verify bad --stack-outputs JSON",
    ),
    pytest.param(
        ("verify", *ENDPOINT, "--stack-outputs", "binary.json", "--out", "r"),
        2,
        "binary.json: not UTF-8",
        id="verify binary --stack-outputs",
    ),
    pytest.param(
        ("local", "status", "--state-dir", "a-file"),
        2,
        "--state-dir a-file: is a file",
        id="local status --state-dir a file",
    ),
    pytest.param(
        ("local", "url", "--state-dir", "a-file"),
        2,
        "--state-dir a-file: is a file",
        id="local url --state-dir a file",
    ),
    pytest.param(
        ("local", "down", "--state-dir", "a-file"),
        2,
        "--state-dir a-file: is a file",
        id="local down --state-dir a file",
    ),
]


@pytest.mark.parametrize(("argv", "code", "words"), BAD_INVOCATIONS)
def test_bad_invocation_is_one_line_and_writes_nothing(
    workdir: Path, argv: tuple[str, ...], code: int, words: str
) -> None:  # fmt: skip
    before = snapshot(workdir)
    proc = kvstack(*argv, cwd=workdir)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == code, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert words in err, err
    # one line for the crash cases; a config error (verify's, or a stack file's) is a header line and one
    # line per problem
    header = err.splitlines()[0]
    one_problem = "invalid configuration" in header or header.endswith("(1 problem):")
    assert len(err.splitlines()) <= (2 if one_problem else 1), err
    assert snapshot(workdir) == before


@pytest.mark.parametrize(
    "argv",
    [("local", "up", "--state-dir", "a-file"), ("local", "install", "--cache-dir", "a-file")],
    ids=["local up", "local install"],
)
def test_local_refuses_a_file_as_a_folder(workdir: Path, argv: tuple[str, ...]) -> None:
    before = snapshot(workdir)
    proc = kvstack(*argv, cwd=workdir)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "a-file: is a file, not a folder" in proc.stdout + proc.stderr  # rich prints to stdout
    assert snapshot(workdir) == before


BUG_IN_PLAN = "import kvstack.infra.cli as m\nm.estimate = None  # a planted bug: 'NoneType' is not callable"
PLAN = ("plan", "--model", "llama-3.1-8b", *SMALL)


def test_an_internal_error_is_one_line_with_the_way_to_the_traceback(tmp_path: Path) -> None:
    proc = python_kvstack(BUG_IN_PLAN, *PLAN, cwd=tmp_path, env={"KVSTACK_DEBUG": ""})
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("kvstack plan: internal error: TypeError at cli.py:")
    assert "'NoneType' object is not callable" in line
    assert "--debug" in line
    assert "KVSTACK_DEBUG=1" in line


@pytest.mark.parametrize(("flag", "env"), [(("--debug",), ""), ((), "1")], ids=["--debug", "KVSTACK_DEBUG=1"])
def test_debug_shows_the_traceback(tmp_path: Path, flag: tuple[str, ...], env: str) -> None:
    proc = python_kvstack(BUG_IN_PLAN, *flag, *PLAN, cwd=tmp_path, env={"KVSTACK_DEBUG": env})
    assert proc.returncode == 4
    assert "Traceback (most recent call last)" in proc.stderr
    assert "TypeError: 'NoneType' object is not callable" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kvstack plan: internal error: TypeError")


BUGS = {
    # an ImportError of our own module: a bug, not "not installed"
    "missing module of ours": "sys.modules['kvstack.infra.stack'] = None",
    # a name our code imports that does not exist
    "missing name": (
        "import types\nsys.modules['kvstack.infra.stack'] = types.ModuleType('kvstack.infra.stack')"
    ),
    # a SyntaxError in one of our modules, raised at import like a broken file would
    "syntax error": (
        "import importlib.abc\n"
        "class Broken(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'kvstack.infra.stack':\n"
        "            raise SyntaxError('invalid syntax', ('stack.py', 3, 1, 'def (:'))\n"
        "sys.meta_path.insert(0, Broken())"
    ),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_a_bug_in_a_subcommand_module_is_not_reported_as_not_installed(tmp_path: Path, bug: str) -> None:
    proc = python_kvstack(BUGS[bug], *PLAN, cwd=tmp_path, env={"KVSTACK_DEBUG": ""})
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "internal error" in line
    assert "not installed" not in line
    assert "pip install" not in line


def test_a_missing_package_of_an_extra_names_the_extra(tmp_path: Path) -> None:
    hide = "sys.modules['kubernetes_validate'] = None  # as if the infra extra were not installed"
    (tmp_path / "ns.yaml").write_text(
        "kind: Namespace\napiVersion: v1\nmetadata: {name: x}\n", encoding="utf-8"
    )
    proc = python_kvstack(hide, "lint", "--manifests", ".", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'kvstack[infra]'" in proc.stderr


def test_missing_extra_classifies_import_errors() -> None:
    third_party = missing_extra(ModuleNotFoundError("No module named 'pulumi'", name="pulumi.runtime"))
    assert third_party is not None
    assert (third_party.package, third_party.extra) == ("pulumi", "infra")
    assert "pip install 'kvstack[infra]'" in third_party.advice()
    core = missing_extra(ModuleNotFoundError("No module named 'httpx'", name="httpx"))
    assert core is not None
    assert core.extra is None
    assert "reinstall kvstack" in core.advice()
    assert missing_extra(ModuleNotFoundError("No module named 'kvstack.x'", name="kvstack.x")) is None
    assert missing_extra(ImportError("cannot import name 'y' from 'pulumi'", name="pulumi")) is None
    assert missing_extra(ModuleNotFoundError("no name")) is None


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        extra: [re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0) for r in reqs]  # type: ignore[union-attr]
        for extra, reqs in project["optional-dependencies"].items()
    }


def test_the_import_names_of_each_extra_are_known() -> None:
    """EXTRA_OF_IMPORT against pyproject.toml's extras and what their distributions install."""
    providers = importlib.metadata.packages_distributions()
    extras = _extras()
    for extra, distributions in extras.items():
        for distribution in distributions:
            tops = {top for top, dists in providers.items() if _pep503(distribution) in map(_pep503, dists)}
            assert tops, f"{distribution} ({extra}) is not installed in the dev venv"
            known = {top: EXTRA_OF_IMPORT[top] for top in tops if top in EXTRA_OF_IMPORT}
            assert known, f"no import name of {distribution} is in EXTRA_OF_IMPORT"
            assert set(known.values()) == {extra}, (distribution, known)
    assert set(EXTRA_OF_IMPORT.values()) <= set(extras)
    assert set(EXTRA_OF_SUBCOMMAND.values()) <= set(extras)


def test_help_documents_the_exit_codes_and_imports_no_subcommand(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom kvstack.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('kvstack.', 'pulumi', 'matplotlib'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    help_text = " ".join(proc.stdout.split())
    for words in (
        "0 ok",
        "1 a check failed",
        "2 bad input",
        "4 internal error",
        "130 interrupted",
        "141 the reader of the output went away",
        "--debug",
    ):
        assert words in help_text
    imported = proc.stdout.strip().splitlines()[-1]
    assert imported == "['kvstack.cli', 'kvstack.output_paths']", imported


def test_verify_imports_nothing_of_the_infra_side(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom kvstack.cli import main\n"
        "try:\n    main(['verify', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.startswith(('kvstack.infra', 'kvstack.local', 'pulumi'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("args", [("plan", "--stack", "dev"), ("lint", "--stack", "dev")])
def test_a_reader_that_went_away_is_exit_141_not_an_internal_error(args: tuple[str, ...]) -> None:
    """`kvstack plan | head`: the pipe's reader is gone before kvstack writes (read end closed first).
    (Not `--help`: argparse swallows its own write errors.)"""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kvstack.cli", *args],
            cwd=Path(__file__).resolve().parents[1],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "", proc.stderr
