"""dpda's `ssl_conformer_tcm` against the published XLS-R + Conformer-TCM (github
ductuantruong/dpda_ga), through fixtures made once from the published modules
(tests/fixtures/published/make_conformer_fixtures.py): same outputs, same state dict after the key
mapping, same parameter count, released-checkpoint loading with one-line refusals, and `dpda eval`
on a published file."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path

import pytest
import torch

from dpda.cli import main
from dpda.errors import UserError
from dpda.models import build_model, count_parameters, load_published_checkpoint
from dpda.models.conformer_tcm import (
    MAX_FRAMES,
    ConformerTCMBackend,
    published_to_dpda,
    sinusoidal_table,
)
from dpda.models.published import CONVERTERS
from dpda.models.registry import build_for_shapes
from dpda.models.state_dict import state_mismatch
from dpda.train.checkpoint import save_checkpoint
from dpda.train.config import config_from_dict
from dpda.train.model_file import MODEL_FORMAT, load_trained_model
from support import to_fairseq, write_tiny_corpus

torch.set_num_threads(1)
FIXTURE = Path(__file__).parent / "fixtures" / "published" / "conformer_tcm.pt"
FIX = torch.load(FIXTURE, weights_only=True)
PUBLISHED_TRAINABLE = 2_382_628  # the published back end (issue 13, and FIX["full_trainable"])
SMALL = dict(ssl=FIX["ssl_config"], num_layers=1)  # the fixture's front end, one published-width block


def _backend_from_fixture() -> ConformerTCMBackend:
    backend = ConformerTCMBackend(1024, d_model=144, num_heads=4, num_layers=1, kernel_size=31)
    state = {k[len("backend."):]: v for k, v in published_to_dpda(FIX["state"]).items()}
    backend.load_state_dict(state, strict=True)
    return backend


def test_backend_equals_published_outputs_on_the_same_features():
    backend = _backend_from_fixture().eval()
    with torch.no_grad():
        torch.testing.assert_close(backend(FIX["feats"]), FIX["logits_eval"], rtol=0, atol=1e-5)
        trained = copy.deepcopy(backend).train()  # batch statistics in both BatchNorms, dropout 0
        torch.testing.assert_close(trained(FIX["feats"]), FIX["logits_train"], rtol=0, atol=1e-5)
    assert not torch.allclose(FIX["logits_eval"], FIX["logits_train"], atol=1e-3)  # the two modes differ


def test_position_table_equals_the_published_one():
    table = sinusoidal_table(MAX_FRAMES, 144)
    torch.testing.assert_close(table[0, :512], FIX["positions_head"], rtol=0, atol=1e-6)
    assert abs(float(table.double().sum()) - FIX["positions_sum"]) < 1e-2
    assert [k for k, _ in FIX["full_keys"] if "positional" in k] == ["conformer.positional_emb"]
    assert dict(map(tuple, [(k, tuple(s)) for k, s in FIX["full_keys"]]))["conformer.positional_emb"] == (1, MAX_FRAMES, 144)


def test_full_preset_has_the_published_keys_shapes_and_parameter_count():
    published = {k: torch.empty(s) for k, s in FIX["full_keys"]}
    model = build_for_shapes("ssl_conformer_tcm", "full")
    own = {k: v for k, v in model.state_dict().items() if k.startswith("backend.")}
    assert state_mismatch(own, published_to_dpda(published)) is None
    assert FIX["full_trainable"] == PUBLISHED_TRAINABLE
    assert count_parameters(model.backend, trainable_only=True) == PUBLISHED_TRAINABLE
    assert model.frontend.layer_logits is None  # the published model reads the last XLS-R layer
    assert CONVERTERS["ssl_conformer_tcm"] is published_to_dpda


def _published_state(prefix: str = "") -> dict[str, torch.Tensor]:
    """A published-format state dict: the fixture's front end under fairseq names + the fixture
    back end + the fixed position table, as the published training saves them."""
    src = build_model("ssl_conformer_tcm", "full", seed=FIX["frontend_seed"], **SMALL).eval()
    with torch.no_grad():  # the front end is rebuilt from its seed: check it is the fixture's
        torch.testing.assert_close(src.frontend(FIX["wave"]), FIX["frontend_feats"], rtol=0, atol=1e-5)
    ssl = to_fairseq(src.frontend.wav2vec2.state_dict())
    state = {f"ssl_model.model.{k}": v for k, v in ssl.items()}
    state.update(FIX["state"])
    state["conformer.positional_emb"] = sinusoidal_table(MAX_FRAMES, 144)
    return {prefix + k: v for k, v in state.items()}


@pytest.fixture(scope="module")
def published_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("published") / "conformer_tcm.pth"
    torch.save(_published_state(), path)
    return path


@pytest.mark.parametrize(("prefix", "name"), [("", "ssl_conformer_tcm"), ("module.", None)])
def test_model_loaded_from_a_published_state_dict_gives_the_published_logits(tmp_path, prefix, name):
    path = tmp_path / "best.pth"
    torch.save(_published_state(prefix), path)  # DataParallel's prefix; None = model detected
    model = load_published_checkpoint(path, name, **SMALL)
    assert not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(FIX["wave"]), FIX["model_logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("conformer.fc5.bias"), r"first: missing backend\.head\.bias \(no key of the file maps to it\)\)"),
    (lambda s: s.update({"conformer.extra.weight": torch.zeros(2)}), r"first: unexpected conformer\.extra\.weight\)"),
    (lambda s: s.update({"LL.weight": torch.zeros(144, 768)}),
     r"first: backend\.proj\.weight \(LL\.weight in the file\) has shape \(144, 768\)"),
    (lambda s: s.update({"conformer.encoder_blocks.1.post_norm.weight": torch.zeros(144)}),  # a second block: 1 here
     r"first: unexpected backend\.blocks\.1\.norm\.weight \(conformer\.encoder_blocks\.1\.post_norm\.weight in the file\)\)"),
    (lambda s: s.update({"ssl_model.model.layer_norm.weight": torch.zeros(3)}),
     r"first: frontend\.wav2vec2\.\S+ \(ssl_model\.model\.layer_norm\.weight in the file\) has shape \(3,\)"),
    (lambda s: s.update({"ssl_model.model.encoder.layers.0.bogus.weight": torch.zeros(2)}),
     r"first: unexpected ssl_model\.model\.encoder\.layers\.0\.bogus\.weight\)"),
])
def test_a_mismatch_is_refused_in_one_line_naming_the_first_key(tmp_path, edit, message):
    state = _published_state()
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(UserError, match=message) as err:
        load_published_checkpoint(tmp_path / "bad.pth", "ssl_conformer_tcm", **SMALL)
    assert "\n" not in str(err.value) and str(tmp_path / "bad.pth") in str(err.value)


def test_unreadable_or_foreign_files_are_refused(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(UserError, match="weights_only=True"):
        load_published_checkpoint(tmp_path / "junk.pth", "ssl_conformer_tcm")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a published checkpoint of any known model"):
        load_published_checkpoint(tmp_path / "other.pth")
    with pytest.raises(UserError, match="no published checkpoint layout"):
        load_published_checkpoint(tmp_path / "other.pth", "lcnn")
    torch.save({"when": datetime.date(2025, 1, 1)}, tmp_path / "pickled.pth")  # not loadable weights-only
    for load in (lambda p: load_published_checkpoint(p), lambda p: load_trained_model(p, torch.device("cpu"), "auto")):
        with pytest.raises(UserError, match="weights_only=True") as err:
            load(tmp_path / "pickled.pth")
        assert "\n" not in str(err.value)


def test_an_empty_state_dict_is_named_as_empty(tmp_path):
    """`{}` is a dict: saying "got dict" would blame its type; the file holds no tensors at all."""
    torch.save({}, tmp_path / "empty.pth")
    for load in (lambda p: load_published_checkpoint(p), lambda p: load_published_checkpoint(p, "ssl_aasist"),
                 lambda p: load_trained_model(p, torch.device("cpu"), "published")):
        with pytest.raises(UserError) as err:
            load(tmp_path / "empty.pth")
        assert str(err.value) == (f"{tmp_path / 'empty.pth'}: the checkpoint holds no tensors (an empty dict); "
                                  "expected a published state dict (name -> tensor)")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(UserError, match=r"list\.pth: expected a published state dict \(name -> tensor\), got list$"):
        load_published_checkpoint(tmp_path / "list.pth")


def test_round_trip_published_to_dpda_model_file_keeps_the_logits(published_file, tmp_path):
    model = load_published_checkpoint(published_file, "ssl_conformer_tcm", **SMALL)
    cfg = config_from_dict({"model": {"name": "ssl_conformer_tcm", "overrides": SMALL}})
    save_checkpoint({"format": MODEL_FORMAT, "model": model.state_dict(), "config": cfg.to_dict()}, tmp_path / "model.pt")
    again, state = load_trained_model(tmp_path / "model.pt", torch.device("cpu"), "auto")
    same, published = load_trained_model(published_file, torch.device("cpu"), "auto",
                                          {"model.overrides": SMALL})
    assert state["format"] == MODEL_FORMAT and published["format"] == "published"
    assert published["config"]["model"]["name"] == "ssl_conformer_tcm"  # detected from the keys
    with torch.no_grad():
        for m in (again, same):
            torch.testing.assert_close(m(FIX["wave"]), FIX["model_logits"], rtol=0, atol=1e-5)


def test_dpda_eval_scores_a_published_checkpoint_like_its_dpda_model_file(published_file, tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path / "c", n_train=2, n_dev=6, seconds=0.5)
    spec = f"dev=asvspoof2019:{corpus}/LA:dev"
    sets = ["--set", f"model.overrides={json.dumps(SMALL)}", "--set", "data.length=8000"]
    common = ["--loader-workers", "0", "--device", "cpu"]
    assert main(["-q", "eval", str(published_file), spec, "-o", str(tmp_path / "pub"), *sets, *common]) == 0
    model, _ = load_trained_model(published_file, torch.device("cpu"), "published", {"model.overrides": SMALL})
    cfg = config_from_dict({"model": {"name": "ssl_conformer_tcm", "overrides": SMALL}, "data": {"length": 8000}})
    save_checkpoint({"format": MODEL_FORMAT, "model": model.state_dict(), "config": cfg.to_dict()}, tmp_path / "model.pt")
    assert main(["-q", "eval", str(tmp_path / "model.pt"), spec, "-o", str(tmp_path / "own"), *common]) == 0
    assert main(["-q", "eval", str(tmp_path / "model.pt"), spec, "-o", str(tmp_path / "own1"), *common,
                 "--score", "logit1"]) == 0
    published = (tmp_path / "pub" / "dev.scores.txt").read_text()
    assert published == (tmp_path / "own1" / "dev.scores.txt").read_text() and len(published.splitlines()) == 6
    capsys.readouterr()
    code = main(["eval", str(published_file), spec, "-o", str(tmp_path / "x"), "--checkpoint-format", "dpda", *common])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--checkpoint-format published" in err
    audio = next((corpus / "LA").rglob("*.flac"))
    code = main(["predict", str(published_file), str(audio), "--threshold", "0", "--device", "cpu"])
    err = capsys.readouterr().err.strip()  # without the fixture's small front end: XLS-R 300M's keys
    assert code == 2 and "\n" not in err and "closest: ssl_conformer_tcm" in err and "first: frontend.wav2vec2." in err


def test_dpda_models_prints_the_published_back_end_count(capsys):
    assert main(["models", "ssl_conformer_tcm", "--preset", "full"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[1][:2] == ["ssl_conformer_tcm", "full"] and rows[1][3] == f"{PUBLISHED_TRAINABLE:,}" and rows[1][4] == "published"
    assert main(["models", "conformer"]) == 2
    assert "model 'conformer': unknown" in capsys.readouterr().err


def test_dpda_models_lists_every_model_with_the_published_back_end_counts(capsys):
    """All models, SSL or not; the published back ends with their published trainable counts."""
    from dpda.models import list_models

    assert main(["models", "--preset", "full"]) == 0
    rows = {r[0]: r for r in (line.split() for line in capsys.readouterr().out.splitlines()[1:])}
    assert set(rows) == set(list_models())
    published = {"ssl_conformer_tcm": PUBLISHED_TRAINABLE, "ssl_aasist": 447_242, "ssl_mamba": 1_936_950,
                 "ssl_nes2net_x": 512_039, "ssl_sls": 23_399_429}
    assert {n: int(r[3].replace(",", "")) for n, r in rows.items() if r[3] != "-"} == published
    assert {n for n, r in rows.items() if r[4].rstrip(",") == "published"} == set(published)
    assert {n: r[5:] for n, r in rows.items() if len(r) > 5} == {"ssl_nes2net_x": ["nes2net"], "ssl_sls": ["sls"]}


def _drifted_table() -> torch.Tensor:
    """The position table after weight decay moved it (the published GA runs): a seeded drift of 0.02."""
    gen = torch.Generator().manual_seed(32)
    return sinusoidal_table(MAX_FRAMES, 144) + 0.02 * torch.randn(1, MAX_FRAMES, 144, generator=gen)


def test_a_drifted_position_table_is_loaded_and_scores_as_the_published_forward(tmp_path, capsys):
    """The published forward adds the checkpoint's own table: loading it must give the logits of a
    model whose table holds the same values, not those of the recomputed sinusoid."""
    state = _published_state()
    state["conformer.positional_emb"] = _drifted_table()
    torch.save(state, tmp_path / "drifted.pth")
    model = load_published_checkpoint(tmp_path / "drifted.pth", "ssl_conformer_tcm", **SMALL)
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and str(tmp_path / "drifted.pth") in out and "conformer.positional_emb" in out
    torch.testing.assert_close(model.backend.positions, _drifted_table(), rtol=0, atol=0)
    own = build_model("ssl_conformer_tcm", "full", **SMALL).eval()  # a dpda model, its table set by hand
    own.load_state_dict(model.state_dict())  # the table is not in it (a non-persistent buffer)
    own.backend.positions.copy_(_drifted_table())
    with torch.no_grad():
        logits = model(FIX["wave"])
        torch.testing.assert_close(logits, own(FIX["wave"]), rtol=0, atol=1e-6)
        assert (logits - FIX["model_logits"]).abs().max() > 1e-4  # the drift changes the scores


def test_an_unchanged_position_table_loads_silently(published_file, capsys):
    load_published_checkpoint(published_file, "ssl_conformer_tcm", **SMALL)
    assert capsys.readouterr().out == ""


def test_a_position_table_of_another_shape_is_refused(tmp_path):
    state = _published_state()
    state["conformer.positional_emb"] = torch.zeros(1, 5000, 144)
    torch.save(state, tmp_path / "wide.pth")
    with pytest.raises(UserError) as err:
        load_published_checkpoint(tmp_path / "wide.pth", "ssl_conformer_tcm", **SMALL)
    assert str(err.value) == (f"{tmp_path / 'wide.pth'}: conformer.positional_emb (dpda: backend.positions) has shape "
                              f"(1, 5000, 144), ssl_conformer_tcm expects (1, {MAX_FRAMES}, 144)")


def _scores(path: Path) -> list[float]:
    return [float(line.split()[1]) for line in path.read_text().splitlines()]


def test_a_published_checkpoint_is_scored_logit1_by_default_and_dpda_files_keep_theirs(published_file, tmp_path, capsys):
    """The published code writes logit[1]; dpda's own model files keep eval.score; --score overrides both."""
    corpus = write_tiny_corpus(tmp_path / "c", n_train=2, n_dev=4, seconds=0.5)
    spec = f"dev=asvspoof2019:{corpus}/LA:dev"
    common = ["--loader-workers", "0", "--device", "cpu", "--set", "data.length=8000"]
    pub = ["eval", str(published_file), spec, "--set", f"model.overrides={json.dumps(SMALL)}", *common]
    assert main([*pub, "-o", str(tmp_path / "pub")]) == 0
    assert "score: logit1 (logit[1], the published one" in capsys.readouterr().out
    assert main([*pub, "-o", str(tmp_path / "diff"), "--score", "logit_diff"]) == 0
    assert "score: logit_diff" in capsys.readouterr().out
    model, state = load_trained_model(published_file, torch.device("cpu"), "published", {"model.overrides": SMALL})
    assert state["config"]["eval"]["score"] == "logit1"
    save_checkpoint({"format": MODEL_FORMAT, "model": model.state_dict(),
                     "config": config_from_dict({"model": {"name": "ssl_conformer_tcm", "overrides": SMALL}}).to_dict()},
                    tmp_path / "model.pt")
    assert main(["eval", str(tmp_path / "model.pt"), spec, "-o", str(tmp_path / "own"), *common]) == 0
    assert "score: logit_diff" in capsys.readouterr().out
    import pandas as pd

    metrics = {d: pd.read_csv(tmp_path / d / "metrics.csv") for d in ("pub", "diff", "own")}
    assert [m["score"].tolist() for m in metrics.values()] == [["logit1"], ["logit_diff"], ["logit_diff"]]
    assert _scores(tmp_path / "diff" / "dev.scores.txt") == _scores(tmp_path / "own" / "dev.scores.txt")
    assert _scores(tmp_path / "pub" / "dev.scores.txt") != _scores(tmp_path / "diff" / "dev.scores.txt")
    _, again = load_trained_model(published_file, torch.device("cpu"), "published",
                                  {"model.overrides": SMALL, "eval.score": "logit_diff"})
    assert again["config"]["eval"]["score"] == "logit_diff"  # an explicit setting wins
