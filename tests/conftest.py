"""Shared fixtures: a tiny synthetic corpus (session-scoped, a few seconds to generate)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_SYNTH = dict(
    train=14, dev=8, eval=12, itw=8, min_seconds=0.6, max_seconds=1.2,
    speakers_train=3, speakers_dev=2, speakers_eval=2, speakers_itw=2, batch_size=8,
)


def _session_env_dir(tmp_path_factory, variable: str, name: str):
    """Point `variable` at a new folder of this test session while it runs (subprocesses and Ray
    workers inherit it), then restore what it was."""
    import os

    path = tmp_path_factory.mktemp(name)
    saved = os.environ.get(variable)
    os.environ[variable] = str(path)
    yield path
    if saved is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = saved


@pytest.fixture(scope="session", autouse=True)
def corpus_check_cache(tmp_path_factory) -> Path:
    """Corpus-check verdicts (dpda.data.check_cache) go to a folder of this test session, not to
    the user's ~/.cache."""
    yield from _session_env_dir(tmp_path_factory, "DPDA_CACHE_DIR", "dpda_cache")


@pytest.fixture(scope="session", autouse=True)
def signing_key_dir(tmp_path_factory) -> Path:
    """The key that signs experiment files (dpda.tune.trust) lives in a folder of this test
    session, not in the user's ~/.config."""
    yield from _session_env_dir(tmp_path_factory, "DPDA_CONFIG_DIR", "dpda_config")


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> dict:
    """Tiny synthetic corpus: {'root': Path, 'specs': {split: spec}, 'counts': {split: {attack: n}},
    'config': SynthConfig}. Read-only: tests must not modify its files (copy them first)."""
    from dpda.data.synth import SynthConfig, write_synthetic_corpus

    cfg = SynthConfig(seed=1234, **TINY_SYNTH)
    root = tmp_path_factory.mktemp("synth") / "corpus"
    result = write_synthetic_corpus(root, cfg, workers=0)
    return {"root": Path(root), "specs": result.specs, "counts": result.counts, "config": cfg}
