"""The published training behaviours beyond the step (docs/published.md), against fixtures recorded
from the published code (tests/fixtures/published/make_training_fixtures.py): the dev loss, the
optimiser's parameter list with the frozen table's drift, and identical Conformer blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dpda.align import aligner_from_spec
from dpda.train.config import load_config
from dpda.train.dev_loss import PUBLISHED_DEV_BATCH, dev_loss
from dpda.train.optim_params import frozen_tables, optimizer_tensors, zero_frozen_grads
from dpda.train.step import DualPathStep

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "published"
sys.path.insert(0, str(FIXTURES))
import step_model as M  # noqa: E402

torch.set_num_threads(1)
FIX = torch.load(FIXTURES / "training_fixtures.pt", weights_only=True)
STEP = torch.load(FIXTURES / "step_fixtures.pt", weights_only=True)
CONFIGS = ("published.yaml", "published_baseline.yaml")


def _terms(logits: torch.Tensor, labels: torch.Tensor, weights=(0.1, 0.9)) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor(weights)
    return F.cross_entropy(logits, labels, weight=w, reduction="none").double(), w[labels].double()


def test_published_dev_loss_equals_the_published_evaluate_accuracy():
    dev = FIX["dev"]
    terms, weights = _terms(dev["logits"], dev["labels"])
    assert len(terms) % PUBLISHED_DEV_BATCH  # the fixture has a short last batch
    assert dev_loss(terms, weights, "published") == pytest.approx(dev["value"], rel=1e-6)
    pooled = dev_loss(terms, weights, "pooled")
    assert pooled == pytest.approx(float(F.cross_entropy(dev["logits"], dev["labels"], weight=torch.tensor([0.1, 0.9]))), rel=1e-6)
    assert abs(pooled - dev["value"]) > 1e-3  # the two definitions differ on this set


def test_dev_loss_definitions_agree_on_one_batch_and_with_equal_weights():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(8, 2, generator=gen), torch.tensor([0, 1, 0, 0, 1, 0, 0, 0])
    terms, weights = _terms(logits, labels)
    assert dev_loss(terms, weights, "published") == pytest.approx(dev_loss(terms, weights, "pooled"), rel=1e-12)
    logits, labels = torch.randn(30, 2, generator=gen), torch.randint(0, 2, (30,), generator=gen)
    terms, weights = _terms(logits, labels, (1.0, 1.0))  # unweighted: both are the plain mean
    assert dev_loss(terms, weights, "published") == pytest.approx(float(terms.mean()), rel=1e-12)


def _dpda_table_run(rule: str, params: str) -> tuple[torch.nn.Module, torch.optim.Adam]:
    """dpda's step from the published config on the table model, the optimiser as the Trainer builds it."""
    cfg = load_config(ROOT / "configs" / ("published_baseline.yaml" if rule == "none" else "published.yaml"),
                      {"optim.params": params})
    model = M.TableModel(as_buffer=True)
    model.net.load_state_dict(STEP["initial"])
    model.train()
    tensors = optimizer_tensors(model, cfg.optim.params)
    optimizer = torch.optim.Adam(tensors, lr=M.LR, weight_decay=cfg.optim.weight_decay)
    if cfg.optim.params == "published" and cfg.align.rule != "none":
        zero_frozen_grads(tensors)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(cfg.loss.class_weights))
    step = DualPathStep(model, loss_fn, optimizer, aligner_from_spec(cfg.align), mode=cfg.align.mode)
    for orig, aug, labels in M.make_batches(torch.Generator().manual_seed(M.SEED)):
        assert not step(orig, aug, labels).to_host()["skipped"]
    return model, optimizer


@pytest.mark.parametrize("rule", ["pcgrad", "none"])
def test_published_params_reproduce_the_published_train_epoch_with_the_frozen_table(rule):
    theirs = FIX["table"][rule]
    model, optimizer = _dpda_table_run(rule, "published")
    ours = model.state_dict()
    assert ours.keys() == theirs["state"].keys()
    for key, expected in theirs["state"].items():
        tol = 1e-5 if expected.is_floating_point() else 0
        torch.testing.assert_close(ours[key], expected, rtol=tol, atol=tol * M.LR + 1e-8, msg=key)
    names = {id(t): n for n, t in model.named_parameters()} | {id(model.table): "table"}
    adam = {names[id(t)]: s for t, s in optimizer.state.items()}
    assert adam.keys() == theirs["adam"].keys()  # the table has Adam state with PCGrad, none in the baseline
    assert ("table" in adam) == (rule == "pcgrad")
    for name, state in theirs["adam"].items():
        for k, v in state.items():
            # float32 rounding: the baseline's one backward of the joint loss vs dpda's two halves
            atol = max(1e-5 * float(v.abs().max()), 1e-8)
            torch.testing.assert_close(adam[name][k].to(v.dtype), v, rtol=1e-5, atol=atol, msg=f"{name}.{k}")
    drift = float((model.table - M.TableModel(as_buffer=True).table).abs().max())
    assert (drift > 1e-3) == (rule == "pcgrad")


def test_trainable_params_leave_the_frozen_table_fixed():
    model, optimizer = _dpda_table_run("pcgrad", "trainable")
    assert torch.equal(model.table, M.TableModel(as_buffer=True).table)
    assert all(t.requires_grad for t in optimizer.param_groups[0]["params"])


def test_conformer_tcm_names_its_position_table_as_frozen():
    from dpda.models import build_model

    model = build_model("ssl_conformer_tcm", "tiny", seed=0)
    tables = frozen_tables(model)
    assert len(tables) == 1 and tables[0] is model.backend.positions
    published = optimizer_tensors(model, "published")
    assert len(published) == len(list(model.parameters())) + 1


def test_identical_blocks_reproduce_the_published_get_clones_initialisation():
    from dpda.models.conformer_tcm import ConformerTCMBackend, published_to_dpda

    case = FIX["blocks"]
    c = case["config"]
    args = dict(d_model=c["emb_size"], num_heads=c["heads"], num_layers=c["num_encoders"], kernel_size=c["kernel_size"])
    torch.manual_seed(case["seed"])
    ours = ConformerTCMBackend(1024, identical_blocks=True, **args).state_dict()
    theirs = {k.removeprefix("backend."): v for k, v in published_to_dpda(case["state"]).items()}
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key  # the published initialisation, bit for bit
    blocks = [{k.split(".", 2)[2]: v for k, v in ours.items() if k.startswith(f"blocks.{i}.")} for i in range(2)]
    assert all(torch.equal(blocks[0][k], blocks[1][k]) for k in blocks[0])
    torch.manual_seed(case["seed"])
    own = ConformerTCMBackend(1024, **args).state_dict()  # dpda's default: independent blocks
    assert not torch.equal(own["blocks.0.ff1.up.weight"], own["blocks.1.ff1.up.weight"])


def test_identical_blocks_is_a_model_override():
    from dpda.models import build_model

    model = build_model("ssl_conformer_tcm", "tiny", seed=0, num_layers=3, identical_blocks=True)
    first = model.backend.blocks[0].state_dict()
    for block in model.backend.blocks[1:]:
        assert all(torch.equal(v, first[k]) for k, v in block.state_dict().items())
        assert block.ff1.up.weight.data_ptr() != model.backend.blocks[0].ff1.up.weight.data_ptr()  # copies


FAIRSEQ_MODEL_CFG = {"dropout": 0.1, "attention_dropout": 0.05, "activation_dropout": 0.0, "dropout_input": 0.2,
                     "encoder_layerdrop": 0.3, "feature_grad_mult": 1.0}
EXPECTED_DROPOUT = {"encoder_dropout": 0.1, "encoder_attention_dropout": 0.05, "encoder_ff_interm_dropout": 0.0,
                    "encoder_projection_dropout": 0.2, "encoder_layer_drop": 0.3}


def _fairseq_checkpoints(tmp_path: Path) -> list[Path]:
    """fairseq's two layouts: a `cfg` dict with its `model` section, and the older argparse `args`."""
    import argparse

    cfg, args = tmp_path / "cfg.pt", tmp_path / "args.pt"
    torch.save({"model": {"mask_emb": torch.zeros(4)}, "cfg": {"model": FAIRSEQ_MODEL_CFG, "task": {}}}, cfg)
    torch.save({"model": {"mask_emb": torch.zeros(4)}, "args": argparse.Namespace(**FAIRSEQ_MODEL_CFG)}, args)
    return [cfg, args]


def _hf_dir(tmp_path: Path, **config) -> Path:
    import json

    folder = tmp_path / "hf"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 64, "hidden_dropout": 0.1, "attention_dropout": 0.05,
                                                    "activation_dropout": 0.0, "feat_proj_dropout": 0.2,
                                                    "layerdrop": 0.3, **config}))
    return folder


def _frontend_config(checkpoint: Path, dropout="checkpoint"):
    from dpda.train.config import config_from_dict

    return config_from_dict({"model": {"name": "ssl_conformer_tcm", "preset": "tiny", "ssl_checkpoint": str(checkpoint),
                                       "frontend_dropout": dropout}}).model


def test_frontend_dropout_is_read_from_fairseq_and_hugging_face_configurations(tmp_path):
    from dpda.models import build_model

    for checkpoint in [*_fairseq_checkpoints(tmp_path), _hf_dir(tmp_path)]:
        overrides = _frontend_config(checkpoint).build_overrides()
        assert overrides["ssl_dropout"] == EXPECTED_DROPOUT, checkpoint
    model = build_model("ssl_conformer_tcm", "tiny", seed=0, **overrides)
    w2v = model.frontend.wav2vec2
    layer = w2v.encoder.transformer.layers[0]
    assert w2v.encoder.feature_projection.dropout.p == 0.2
    assert w2v.encoder.transformer.dropout.p == layer.dropout.p == layer.feed_forward.output_dropout.p == 0.1
    assert layer.attention.dropout == 0.05
    assert layer.feed_forward.intermediate_dropout.p == 0.0
    assert w2v.encoder.transformer.layer_drop == 0.3
    explicit = _frontend_config(tmp_path, {"encoder_layer_drop": 0.5}).build_overrides()["ssl_dropout"]
    assert explicit == {**dict.fromkeys(EXPECTED_DROPOUT, 0.0), "encoder_layer_drop": 0.5}
    assert _frontend_config(tmp_path, "off").build_overrides() == {}


def test_frontend_dropout_keys_name_wav2vec2_model_arguments():
    from dpda.models.ssl_weights import DROPOUT_KEYS
    from dpda.train.config import FrontendDropout

    assert list(FrontendDropout.model_fields) == list(DROPOUT_KEYS)


def test_frontend_layer_drop_acts_in_train_mode_only():
    from dpda.models import build_model

    dropped = build_model("ssl_conformer_tcm", "tiny", seed=0, ssl_dropout={"encoder_layer_drop": 1.0}).frontend
    plain = build_model("ssl_conformer_tcm", "tiny", seed=0).frontend
    wave = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = plain.eval()(wave)
        assert torch.equal(plain.train()(wave), reference)  # dpda's default: no dropout in train mode
        assert torch.equal(dropped.eval()(wave), reference)
        assert not torch.allclose(dropped.train()(wave), reference)  # every layer dropped while training


def test_frontend_dropout_refusals_name_the_key(tmp_path):
    from dpda.errors import UserError
    from dpda.train.config import config_from_dict

    with pytest.raises(UserError, match=r"hidden_dropout: expected a dropout probability"):
        _frontend_config(_hf_dir(tmp_path, hidden_dropout=None)).build_overrides()
    bare = tmp_path / "bare.pt"
    torch.save({"model": {"mask_emb": torch.zeros(4)}}, bare)
    with pytest.raises(UserError, match=r"bare.pt: no fairseq model configuration"):
        _frontend_config(bare).build_overrides()
    with pytest.raises(UserError, match=r"model.frontend_dropout: aasist has no SSL front end"):
        config_from_dict({"model": {"name": "aasist", "frontend_dropout": "checkpoint"}})
    with pytest.raises(UserError, match=r"model.frontend_dropout: checkpoint reads model.ssl_checkpoint"):
        config_from_dict({"model": {"name": "ssl_conformer_tcm", "preset": "tiny", "frontend_dropout": "checkpoint"}})


def test_a_published_config_run_drifts_the_table_and_trains_with_the_checkpoints_dropout(tmp_path):
    """The Trainer wires the switches: a tiny XLS-R + Conformer-TCM run of configs/published.yaml."""
    from dpda.models import build_model
    from dpda.models.conformer_tcm import sinusoidal_table
    from dpda.train.loop import Trainer
    from support import to_fairseq, write_separable_corpus

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    ssl = build_model("ssl_conformer_tcm", "tiny", seed=0).frontend.wav2vec2.state_dict()
    checkpoint = tmp_path / "xlsr.pt"
    torch.save({"model": to_fairseq(ssl), "cfg": {"model": FAIRSEQ_MODEL_CFG}}, checkpoint)
    cfg = load_config(ROOT / "configs" / "published.yaml", {
        "device": "cpu", "model.preset": "tiny", "model.ssl_checkpoint": str(checkpoint),
        "data.train": [f"csv:{corpus}/train.csv"], "data.dev": [f"csv:{corpus}/dev.csv"], "data.eval": {},
        "data.length": 4000, "data.num_workers": 0, "optim.batch_size": 2, "optim.epochs": 1,
        "optim.epoch_cap": "dpda", "optim.max_steps_per_epoch": 2, "optim.lr": 1e-3,
        "checkpoint.average_best": 1, "telemetry.enabled": False,
    })
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    backend = trainer.model.backend
    assert trainer.model.frontend.wav2vec2.encoder.transformer.layer_drop == 0.3
    assert backend.positions in trainer.optimizer.state  # Adam's state for the frozen table
    drift = float((backend.positions - sinusoidal_table(*backend.positions.shape[1:])).abs().max())
    assert drift > 1e-4  # two steps of weight decay at lr 1e-3
    # model.pt (the n-best average, here of one epoch) keeps the drifted table, and loading it restores it
    from dpda.errors import UserError
    from dpda.train.checkpoint import load_checkpoint
    from dpda.train.model_file import load_trained_model

    saved = load_checkpoint(tmp_path / "run" / "model.pt")["tables"]
    epoch = load_checkpoint(next((tmp_path / "run" / "checkpoints").glob("epoch_*.pt")))["tables"]
    assert saved.keys() == {"backend.positions"} and torch.equal(saved["backend.positions"], epoch["backend.positions"])
    loaded, _ = load_trained_model(tmp_path / "run" / "model.pt", torch.device("cpu"))
    assert torch.equal(loaded.backend.positions, saved["backend.positions"])
    assert not torch.equal(loaded.backend.positions, sinusoidal_table(*backend.positions.shape[1:]))
    bad = load_checkpoint(tmp_path / "run" / "model.pt")
    bad["tables"]["backend.positions"] = bad["tables"]["backend.positions"][:, :5000]
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(UserError, match=r"bad.pt: tables.backend.positions: \(1, 5000, 32\) does not fit"):
        load_trained_model(tmp_path / "bad.pt", torch.device("cpu"))


@pytest.mark.parametrize("name", CONFIGS)
def test_published_configs_set_the_training_switches(name):
    cfg = load_config(ROOT / "configs" / name)
    assert (cfg.eval.dev_loss, cfg.optim.params) == ("published", "published")
    assert cfg.model.overrides.get("identical_blocks") is True
    assert cfg.model.frontend_dropout == "checkpoint"
    defaults = load_config(ROOT / "configs" / "demo.yaml")
    assert (defaults.eval.dev_loss, defaults.optim.params) == ("pooled", "trainable")
