"""The experiment files that `Tuner.restore` deserializes (pickle / cloudpickle) are trusted only
through one manifest: EXPERIMENT/.dpda-state-manifest (JSON) holds, for each such file name, the
HMAC (dpda.tune.trust's per-user key) of the last few contents dpda's driver produced under that
name. Before Tune restores, every file it will deserialize must match one of them, else one line
naming the file and nothing of it is unpickled.

Why a manifest and not a signature beside each file: Tune writes its state into a local staging
folder and a background thread copies that folder into the experiment folder file by file, so a
signature file would be copied separately from the file it signs and a kill leaves them out of
step. Here a content is tagged when Tune has produced it and before it can reach the experiment
folder (the staging copy is made after `TuneController.save_to_dir` returns; tuner.pkl's bytes
are tagged between Tune's `pickle.dumps` and its write); the manifest is rewritten atomically and
keeps the last KEEP tags per name, so after a SIGKILL at any point each file there holds a
content that was tagged, old or new, file by file. Not covered: a kill in the middle of Tune's
own (non-atomic) copy of one file leaves a torn file that Tune could not parse either; resume
refuses it, naming it.

Coupling to Ray's internals (pyproject pins ray==2.60.0 exactly; check these when it moves):
`TuneController.save_to_dir` writes experiment_state-<session>.json (cloudpickled blobs inside),
the searcher's searcher-state-<session>.pkl and search_gen_state-<session>.json (or, for
`dpda study`'s grid, BasicVariantGenerator's pickled basic-variant-state-<session>.json), and
callback-states-<session>.pkl into `_storage.experiment_driver_staging_path`, named with
`_session_str`; `ray.tune.impl.tuner_internal` writes tuner.pkl with its module-level `pickle`
(ray.cloudpickle) once, when a Tuner is made; on restore Tune loads tuner.pkl and the newest
(largest name) file of each family. The hooks are installed only while dpda's driver runs a
search (`tagging`), never at import.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyarrow.fs as pafs

from dpda.errors import UserError
from dpda.tune import trust

# not *.json / *.pkl: Tune's restore copies those from the experiment folder into its staging
# folder, and every later sync copies them back, which would put a stale manifest over the live one
MANIFEST = ".dpda-state-manifest"
KEEP = 8  # tags kept per file name: Tune saves every >= 10 s, its copy takes milliseconds
TUNER_PKL = "tuner.pkl"  # written once when the Tuner is made; Tuner.can_restore looks for it
# what Tune loads on restore: the newest file of each family (by name; the session is a timestamp)
# (basic-variant-state-*.json: the grid generator of `dpda study`, a pickle despite its name)
FAMILIES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl", "callback-states-*.pkl",
            "basic-variant-state-*.json")


def tag(name: str, content: bytes) -> str:
    """HMAC of a file's base name and content: a tag made for one name does not pass for another."""
    return hmac.new(trust.key(), name.encode() + b"\0" + content, hashlib.sha256).hexdigest()


def _path(exp: str, name: str, fs: pafs.FileSystem) -> str:
    return os.path.join(exp, name) if isinstance(fs, pafs.LocalFileSystem) else posixpath.join(exp, name)


def _read_manifest(fs: pafs.FileSystem, exp: str) -> dict[str, list[str]] | None:
    """name -> tags, oldest first; None when there is no readable manifest."""
    try:
        with fs.open_input_stream(_path(exp, MANIFEST, fs)) as f:
            entries = json.loads(f.read()).get("tags", {})
    except (FileNotFoundError, OSError, ValueError, AttributeError):
        return None
    if not isinstance(entries, dict):
        return None
    return {k: [t for t in v if isinstance(t, str)] for k, v in entries.items() if isinstance(v, list)}


def record(fs: pafs.FileSystem, exp: str, contents: Mapping[str, bytes]) -> None:
    """Add the tags of `contents` (base name -> bytes) to the manifest of `exp`, atomically."""
    entries = _read_manifest(fs, exp) or {}
    for name, content in contents.items():
        new = tag(name, content)
        entries[name] = ([t for t in entries.get(name, []) if t != new] + [new])[-KEEP:]
    data = json.dumps({"format": 1, "tags": entries}, indent=1, sort_keys=True).encode()
    target = _path(exp, MANIFEST, fs)
    if isinstance(fs, pafs.LocalFileSystem):  # a reader sees the old manifest or the new, never half
        tmp = f"{target}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    else:  # an object store's PUT is atomic
        with fs.open_output_stream(target) as f:
            f.write(data)


def files_tune_loads(fs: pafs.FileSystem, exp: str) -> list[str]:
    """Base names of the files `Tuner.restore` of `exp` deserializes: tuner.pkl and the newest
    file of each family."""
    infos = fs.get_file_info(pafs.FileSelector(exp, allow_not_found=True))
    names = [i.base_name for i in infos if i.type == pafs.FileType.File]
    chosen = [TUNER_PKL] if TUNER_PKL in names else []
    for pattern in FAMILIES:
        matching = fnmatch.filter(names, pattern)
        if matching:
            chosen.append(max(matching))
    return chosen


def verify_experiment(fs: pafs.FileSystem, exp: str) -> None:
    """Refuse (one line naming the file) any file that Tune's restore of `exp` would deserialize
    and whose content has no tag in the manifest; reads bytes, unpickles nothing."""
    entries = _read_manifest(fs, exp)
    for name in files_tune_loads(fs, exp):
        path = _path(exp, name, fs)
        if entries is None:
            raise UserError(f"{path}: no readable {MANIFEST} beside it, so nothing vouches for it; "
                            "refusing to unpickle it (start a new experiment with --name)")
        with fs.open_input_stream(path) as f:
            content = f.read()
        mine = tag(name, content)  # one HMAC of the file, compared with each kept tag
        if not any(hmac.compare_digest(mine, t) for t in entries.get(name, [])):
            raise UserError(f"{path}: content not in {MANIFEST} (altered, truncated, or written by another "
                            f"user or key than {trust.key_path()}); refusing to unpickle it")


def _session_files(staging: str, session: str) -> dict[str, bytes]:
    """The state files that one `save_to_dir` wrote into the staging folder (this session's names
    only: older files copied down on restore are not vouched for again)."""
    contents = {}
    for pattern in FAMILIES:
        name = pattern.replace("*", session)
        path = os.path.join(staging, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                contents[name] = f.read()
    return contents


class _TaggingPickle:
    """ray.cloudpickle as tuner_internal sees it, tagging the Tuner's state (a dict) as tuner.pkl
    between `dumps` and Tune's write."""

    def __init__(self, module: Any, recorder: Callable[[Mapping[str, bytes]], None]) -> None:
        self._module, self._recorder = module, recorder

    def dumps(self, obj: Any, *args: Any, **kwargs: Any) -> bytes:
        data = self._module.dumps(obj, *args, **kwargs)
        if isinstance(obj, dict):  # the Tuner's __getstate__; the trainable's size check is not
            self._recorder({TUNER_PKL: data})
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@contextmanager
def tagging(fs: pafs.FileSystem, exp: str) -> Iterator[None]:
    """While it is held (making the Tuner, and its fit), every state file Tune produces is tagged
    in the manifest of `exp` on `fs` before it can land there."""
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.impl import tuner_internal

    original_save = TuneController.save_to_dir
    original_pickle = tuner_internal.pickle

    def save_to_dir(controller: TuneController) -> None:
        original_save(controller)  # staging only; the copy to the experiment folder starts after
        storage = controller._storage
        contents = _session_files(storage.experiment_driver_staging_path, controller._session_str)
        if contents:
            record(storage.storage_filesystem, storage.experiment_fs_path, contents)

    TuneController.save_to_dir = save_to_dir
    tuner_internal.pickle = _TaggingPickle(original_pickle, lambda contents: record(fs, exp, contents))
    try:
        yield
    finally:
        TuneController.save_to_dir = original_save
        tuner_internal.pickle = original_pickle
