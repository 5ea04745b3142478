"""The install: the lock agrees with pyproject, `dpda doctor` tells a sound install from a broken
one in one line, a torchaudio that cannot load is one line everywhere, and `--help` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from dpda import install
from dpda.cli import main

ROOT = Path(__file__).resolve().parents[1]
UNDEFINED = "libtorchaudio.abi3.so: undefined symbol: torch_exception_get_what_without_backtrace"


def _lock_pins() -> dict[str, str]:
    """name -> version of every lock entry that applies to this interpreter and platform."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if m and (m.group(3) is None or Marker(m.group(3)).evaluate()):
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_compiled_pair_pinned_exactly_in_pyproject_and_lock():
    deps = {Requirement(d).name: str(Requirement(d).specifier) for d in _pyproject()["project"]["dependencies"]}
    assert deps["torch"] == "==2.11.0" and deps["torchaudio"] == "==2.11.0"
    pins = _lock_pins()
    assert pins["torch"] == pins["torchaudio"] == "2.11.0"


def test_lock_pins_every_dependency_within_pyproject_ranges_with_hashes():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    direct = project["dependencies"] + extras["test"]
    for line in extras["test"]:  # the test extra pulls in other extras of dpda itself (dpda[real])
        req = Requirement(line)
        if req.name == project["name"]:
            direct += [d for extra in req.extras for d in extras[extra]]
    pins = _lock_pins()
    for line in direct:
        req = Requirement(line)
        if req.name == project["name"]:
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock"
        assert req.specifier.contains(pins[name]), f"lock pins {name}=={pins[name]} outside {req.specifier}"
    text = (ROOT / "requirements.lock").read_text()
    entries = re.findall(r"^[A-Za-z0-9_.\-]+==.*$", text, flags=re.M)
    assert len(entries) > 50  # transitive dependencies too, not just the direct ones
    assert text.count("--hash=sha256:") >= len(entries)
    assert "ray==2.60." in text


def test_readme_commands_cluster_and_ci_install_from_the_lock():
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line for line in readme[:10] if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert all(c.startswith(install.FIX_COMMAND + " && ") for c in commands)
    assert commands[0].endswith("dpda quickstart")
    assert commands[1].endswith(".venv/bin/dpda doctor && .venv/bin/python -m pytest")
    cluster = (ROOT / "cluster.yaml").read_text()
    assert "pip install -q -r ~/dpda/requirements.lock" in cluster and "- dpda doctor" in cluster
    assert "-m pytest" in (ROOT / ".ci" / "run").read_text()


def test_pair_rule_ignores_local_build_tags_and_names_both_versions():
    assert install.pair_problem("2.11.0", "2.11.0") is None
    assert install.pair_problem("2.11.0+cu130", "2.11.0+cpu") is None
    msg = install.pair_problem("2.11.0", "2.11.1")
    assert msg == "torchaudio 2.11.1 is built for torch 2.11.1, but torch 2.11.0 is installed"
    assert install.pair_problem(None, "2.11.0") == "torch is not installed"


def test_requirement_problems_reports_drift_and_ignores_extras(monkeypatch):
    monkeypatch.setattr(install.md, "requires", lambda dist: [
        "torch==2.11.0", "ray[default,tune]==2.60.*", "pyarrow>=17", 'pytest>=8; extra == "test"'])
    versions = {"torch": "2.11.0+cu130", "ray": "2.61.0", "pyarrow": None, "pytest": "7.0"}
    monkeypatch.setattr(install, "installed_version", versions.get)
    assert install.requirement_problems() == [
        "ray 2.61.0 is installed, dpda needs ray==2.60.*",
        "pyarrow is not installed (dpda needs pyarrow>=17)",
    ]


def test_doctor_passes_on_this_install(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("python", "torch", "torchaudio", "ray", "optuna", "pyarrow", "duckdb", "plotly", "devices"):
        assert re.search(rf"^{name}\s+\S", out, flags=re.M), name
    assert re.search(r"^torch\s+2\.11\.0", out, flags=re.M)
    assert "cpu" in out.splitlines()[-2]


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err
    return errors[0]


def test_doctor_fails_in_one_line_on_a_mismatched_pair(monkeypatch, capsys):
    real = install.installed_version
    monkeypatch.setattr(install, "installed_version", lambda d: "2.11.1" if d == "torchaudio" else real(d))
    assert main(["doctor"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("dpda doctor: error: torchaudio 2.11.1 is built for torch 2.11.1, but torch 2.11.0")
    assert line.endswith("reinstall from the lock: " + install.FIX_COMMAND)


def test_doctor_fails_in_one_line_when_the_extension_does_not_load(monkeypatch, capsys):
    def broken(_module):
        raise OSError(UNDEFINED)

    monkeypatch.setattr(install, "check_extension", broken)
    assert main(["doctor", "-q"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_error_line(captured.err)
    assert f"torchaudio does not load ({UNDEFINED}): torch 2.11.0 and torchaudio 2.11.0 are installed" in line
    assert line.endswith(install.FIX_COMMAND)
    with pytest.raises(install.InstallError, match="undefined symbol.*reinstall from the lock"):
        install.import_torchaudio()


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_a_command_meeting_a_broken_torchaudio_prints_one_line(tmp_path):
    # a fresh interpreter in which `import torchaudio` fails, as with a mismatched compiled pair
    code = ("import sys; sys.modules['torchaudio'] = None\n"
            "from dpda.cli import main\n"
            f"sys.exit(main(['synth', {str(tmp_path / 'corpus')!r}, '--train', '2']))")
    proc = _run(code)
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert line.startswith("dpda synth: error: torchaudio does not load (")
    assert "torch 2.11.0 and torchaudio 2.11.0 are installed" in line and install.FIX_COMMAND in line
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("argv", [["--help"], ["synth", "--help"], ["train", "--help"], ["doctor", "--help"],
                                  ["tune", "--help"], ["check", "--help"], ["quickstart", "--help"]])
def test_help_does_not_import_torch(argv):
    code = ("import sys, contextlib, io\nfrom dpda.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    try: main({argv!r})\n    except SystemExit: pass\n"
            "assert 'usage: dpda' in out.getvalue()\n"
            "print(sorted(m for m in ('torch', 'torchaudio', 'ray') if m in sys.modules))")
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
