"""Is this install sound? Versions, the torch/torchaudio pair, and the command that repairs it.

Why: torch and torchaudio are a compiled pair; a torchaudio patch release built against a newer
torch installs without complaint and then fails to load with an undefined C++ symbol. Users must
see one line that names both versions and the fix, never a raw OSError traceback. Reading
versions uses package metadata only, so this module imports neither torch nor torchaudio.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
from dataclasses import dataclass
from types import ModuleType

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from dpda.errors import UserError

# The README's install step; it is the repair for every problem this module finds.
FIX_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -r requirements.lock && "
               ".venv/bin/pip install --no-deps --no-build-isolation -e .")
# The packages `dpda doctor` lists, in the order it lists them.
REPORTED = ("torch", "torchaudio", "ray", "optuna", "pyarrow", "duckdb", "plotly", "pandas", "numpy",
            "soundfile")


class InstallError(UserError):
    """The installed packages cannot work together; the message names them and the fix."""


def installed_version(dist: str) -> str | None:
    """Version of an installed distribution from its metadata (no import), None if absent."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _release(version: str) -> str:
    """`2.11.0+cu130` -> `2.11.0`: the public release, which is what the pair must share."""
    try:
        return Version(version).base_version
    except InvalidVersion:
        return version.split("+")[0]


def pair_problem(torch_version: str | None, torchaudio_version: str | None) -> str | None:
    """One line if torch and torchaudio cannot load together (each torchaudio release is built
    against the torch release of the same number), else None."""
    if torch_version is None or torchaudio_version is None:
        missing = "torch" if torch_version is None else "torchaudio"
        return f"{missing} is not installed"
    if _release(torch_version) != _release(torchaudio_version):
        return (f"torchaudio {torchaudio_version} is built for torch {_release(torchaudio_version)}, "
                f"but torch {torch_version} is installed")
    return None


def requirement_problems(dist: str = "dpda") -> list[str]:
    """Direct requirements of `dist` that the installed versions do not satisfy (drift from the
    pins in pyproject.toml). Extras are not checked: they are optional."""
    try:
        requires = md.requires(dist) or []
    except md.PackageNotFoundError:
        return [f"{dist} is not installed as a package"]
    problems = []
    for line in requires:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = installed_version(req.name)
        if have is None:
            problems.append(f"{req.name} is not installed ({dist} needs {req.name}{req.specifier})")
        elif req.specifier and not req.specifier.contains(_release(have), prereleases=True):
            problems.append(f"{req.name} {have} is installed, {dist} needs {req.name}{req.specifier}")
    return problems


def load_failure_reason(exc: BaseException) -> str:
    """Why torchaudio failed to import or load its compiled extension, naming both versions."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    torch_v, audio_v = installed_version("torch"), installed_version("torchaudio")
    why = pair_problem(torch_v, audio_v) or f"torch {torch_v} and torchaudio {audio_v} are installed"
    return f"torchaudio does not load ({first}): {why}"


def with_fix(problem: str) -> str:
    """A problem line followed by the command that repairs the install."""
    return f"{problem}; reinstall from the lock: {FIX_COMMAND}"


def import_torchaudio() -> ModuleType:
    """Import torchaudio and make sure its compiled extension works, or raise InstallError."""
    try:
        module = importlib.import_module("torchaudio")
        check_extension(module)
    except (ImportError, OSError, RuntimeError, AttributeError) as exc:
        raise InstallError(with_fix(load_failure_reason(exc))) from None
    return module


def check_extension(torchaudio: ModuleType) -> None:
    """Call into libtorchaudio once: an import can succeed while the C++ ops are missing."""
    import torch

    if not getattr(torchaudio._extension, "_IS_TORCHAUDIO_EXT_AVAILABLE", False):
        raise ImportError("torchaudio's compiled extension is not available")
    torch.ops._torchaudio.is_align_available()


@dataclass(frozen=True)
class Diagnosis:
    """What `dpda doctor` prints: versions, devices, and the problems (empty when sound)."""

    versions: dict[str, str | None]
    devices: list[str]
    problems: list[str]


def torch_devices() -> list[str]:
    """The devices torch can use here, e.g. ['cpu', 'cuda:0 NVIDIA H200 (139.8 GiB)']."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} {props.name} ({props.total_memory / 2**30:.1f} GiB)")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def diagnose() -> Diagnosis:
    """Check the install end to end: pins, the compiled pair, and torchaudio's extension."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "dpda": installed_version("dpda")}
    versions.update({name: installed_version(name) for name in REPORTED})
    problems = requirement_problems()
    pair = pair_problem(versions["torch"], versions["torchaudio"])
    devices: list[str] = []
    if pair is not None:
        problems.insert(0, pair)
    else:
        try:
            check_extension(importlib.import_module("torchaudio"))
            devices = torch_devices()
        except (ImportError, OSError, RuntimeError, AttributeError) as exc:
            problems.insert(0, load_failure_reason(exc))
    return Diagnosis(versions, devices, problems)
