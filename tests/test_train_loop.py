"""The training loop: config validation, learning on the synthetic corpus, exact resume,
n-best averaging, and the eval / score / predict commands on the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dpda.cli import main
from dpda.errors import UserError
from dpda.metrics import read_scores
from dpda.train.checkpoint import average_state_dicts, load_checkpoint
from dpda.train.config import config_from_dict, load_config
from dpda.train.loop import Trainer
from support import demo_dict, write_separable_corpus





# ------------------------------------------------------------------------------ config errors
@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"optim": {"lrr": 0.1}}, "optim.lrr: unknown key"),
        ({"optim": {"lr": "fast"}}, "optim.lr: must be a number"),
        ({"optim": {"lr": -1.0}}, "optim.lr: must be > 0"),
        ({"align": {"strength": 2}}, "align.strength: must be in [0, 1]"),
        ({"align": {"rule": "pcgard"}}, "align.rule: must be one of"),
        ({"augment": {"mode": "triple"}}, "augment.mode: must be one of"),
        ({"augment": {"rawboost": {"algo": 4, "SNRmin": 50, "SNRmax": 10}}}, "augment.rawboost"),
        ({"augment": {"rawboost": {"algo": 4, "nBandz": 3}}}, "nBandz"),
        ({"model": {"name": "resnet9000"}}, "model.name: unknown model"),
        ({"loss": {"class_weights": [1.0]}}, "loss.class_weights"),
        ({"data": {"train": "x.csv"}}, "data.train: must be a list"),
        ({"bogus": 1}, "bogus: unknown key"),
    ],
)
def test_bad_config_names_the_key(patch: dict, message: str) -> None:
    raw = {"model": {"name": "aasist", "preset": "tiny"}}
    for section, value in patch.items():
        if isinstance(value, dict) and isinstance(raw.get(section), dict):
            raw[section].update(value)
        else:
            raw[section] = value
    with pytest.raises(UserError) as info:
        config_from_dict(raw, source="my.yaml")
    assert str(info.value).startswith("my.yaml: ")
    assert message in str(info.value)


def test_old_augmented_only_name_still_works_and_says_so(capsys) -> None:
    raw = {"model": {"name": "aasist", "preset": "tiny"}, "augment": {"mode": "da"}}
    assert config_from_dict(raw, source="old.yaml").augment.mode == "augmented"
    assert capsys.readouterr().err.strip() == "augment.mode: 'da' is deprecated, use 'augmented'"
    raw["augment"]["mode"] = "augmented"
    config_from_dict(raw, source="new.yaml")
    assert capsys.readouterr().err == ""


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\noptim:\n  lr: [1, 2\n")
    with pytest.raises(UserError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(bad)


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    path = Path(__file__).parents[1] / "configs/demo.yaml"
    cfg = load_config(path, {"optim.lr": 0.5, "align.rule": "cagrad"})
    assert cfg.optim.lr == 0.5 and cfg.align.rule == "cagrad"
    again = config_from_dict(cfg.to_dict())
    assert again == cfg


def test_shipped_configs_validate() -> None:
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        load_config(path)


# ------------------------------------------------------------------------------ averaging
def test_average_state_dicts_means_floats_and_keeps_integer_buffers() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    out = average_state_dicts([a, b])
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 4.0]))
    assert out["n"].item() == 3 and out["w"].dtype == torch.float32


# ------------------------------------------------------------------------------ training runs
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_separable_corpus(tmp_path_factory.mktemp("separable"))


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory) -> tuple[Path, Path, dict]:
    """One uninterrupted 3-epoch run, shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("run_full")
    raw = demo_dict(corpus)
    summary = Trainer(config_from_dict(raw), run_dir, progress=False).fit()
    return run_dir, corpus, summary


def test_training_learns_and_averages_best_epochs(trained) -> None:
    run_dir, _, summary = trained
    history = load_checkpoint(run_dir / "checkpoints/last.pt", "dpda-train-state")["history"]
    assert len(history) == 3
    # the tiny model learns the separable task within 3 short epochs (chance is 0.5)
    assert summary["best_dev_eer"] < 0.15, summary
    # the n best epochs by dev loss were averaged into model.pt, and only they were kept
    best = sorted(history, key=lambda h: h["dev_loss"])[:3]
    assert sorted(summary["averaged_epochs"]) == sorted(h["epoch"] + 1 for h in best)
    # the config's eval sets were scored with the averaged model at the end
    assert set(summary["eval_eer"]) == {"eval"}
    assert (run_dir / "eval/eval.scores.txt").exists()
    # the saved model's dev EER comes with its bootstrap interval, the eval sets (per attack too) with theirs
    assert summary["final_dev_eer_low"] <= summary["final_dev_eer"] <= summary["final_dev_eer_high"]
    import pandas as pd

    metrics = pd.read_csv(run_dir / "eval/metrics.csv")
    breakdown = pd.read_csv(run_dir / "eval/eval.breakdown.csv")
    for table in (metrics, breakdown.dropna(subset=["eer"])):
        assert ((table["eer_low"] <= table["eer"]) & (table["eer"] <= table["eer_high"])).all()
    kept = sorted((run_dir / "checkpoints").glob("epoch_*.pt"))
    assert len(kept) == 3
    # best first, as the trainer averages them (integer buffers come from the best epoch)
    states = [load_checkpoint(run_dir / f"checkpoints/epoch_{e - 1:04d}.pt")["model"] for e in summary["averaged_epochs"]]
    final = load_checkpoint(run_dir / "model.pt")["model"]
    expected = average_state_dicts(states)
    for key, value in final.items():
        torch.testing.assert_close(value, expected[key])


def test_resume_reproduces_uninterrupted_run(trained, tmp_path: Path) -> None:
    run_dir, corpus, _ = trained
    partial = config_from_dict(demo_dict(corpus, epochs=2))
    Trainer(partial, tmp_path, progress=False).fit()
    resumed = Trainer(config_from_dict(demo_dict(corpus)), tmp_path, progress=False)
    resumed.fit()
    assert resumed.attempt == 1
    full = load_checkpoint(run_dir / "checkpoints/last.pt")["model"]
    again = load_checkpoint(tmp_path / "checkpoints/last.pt")["model"]
    for key, value in full.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=0)
    # the telemetry of the interrupted + resumed run reads back every step exactly once, the
    # resumed attempt's rows replacing any the first attempt wrote after its checkpoint
    from dpda_analysis import open_telemetry

    steps = open_telemetry(tmp_path).sql("SELECT step, attempt FROM steps ORDER BY step")
    n_steps = load_checkpoint(run_dir / "checkpoints/last.pt")["global_step"]
    assert steps["step"].tolist() == list(range(n_steps))
    assert set(steps["attempt"]) == {0, 1}


def test_eval_score_predict_commands(trained, tmp_path: Path, capsys) -> None:
    run_dir, corpus, _ = trained
    out = tmp_path / "eval"
    assert main(["eval", str(run_dir / "model.pt"), f"csv:{corpus}/eval.csv",
                 f"heldout=csv:{corpus}/dev.csv", "-o", str(out), "--loader-workers", "0", "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["set"] for m in metrics] == ["csv", "heldout"]
    assert metrics[0]["n_bonafide"] == 16 and metrics[0]["n_spoof"] == 16
    scores = read_scores(out / "csv.scores.txt")
    assert sorted(scores.index) == [f"eval_{i:03d}" for i in range(32)]
    assert np.isfinite(scores.to_numpy()).all()
    # the scores are the model's: the eval command and a direct forward pass agree
    from dpda.train.model_file import load_trained_model
    from dpda.data.audio import load_audio

    model, _ = load_trained_model(run_dir / "model.pt", torch.device("cpu"))
    with torch.no_grad():
        logits = model(load_audio(corpus / "eval_005.wav")[None, :8000])
    assert float(logits[0, 1] - logits[0, 0]) == pytest.approx(scores["eval_005"], rel=1e-4, abs=1e-5)
    # `dpda score` recomputes the same EER from the written files
    capsys.readouterr()
    assert main(["score", str(out / "csv.scores.txt"), f"csv:{corpus}/eval.csv"]) == 0
    printed = capsys.readouterr().out
    assert f"{100 * metrics[0]['eer']:.2f}" in printed
    # per-attack breakdown written beside the scores
    breakdown = (out / "csv.breakdown.csv").read_text()
    assert "T01" in breakdown
    # predict: the dev threshold by default, decisions per file
    wavs = [corpus / f"eval_{i:03d}.wav" for i in range(3)]
    assert main(["predict", str(run_dir / "model.pt"), *map(str, wavs), "--device", "cpu"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert len(lines) == 3 and all(ln.split("\t")[2] in ("bonafide", "spoof") for ln in lines)


def test_telemetry_records_every_step(trained) -> None:
    """The trainer's Parquet telemetry: one row per step and per (step, layer), and the epoch
    conflict fraction equals the per-step flags."""
    from dpda_analysis import conflict_by_epoch, open_telemetry

    run_dir, _, _ = trained
    state = load_checkpoint(run_dir / "checkpoints/last.pt")
    tel = open_telemetry(run_dir)
    steps = tel.sql("SELECT step, epoch, conflict FROM steps ORDER BY step")
    assert steps["step"].tolist() == list(range(state["global_step"]))
    by_epoch = conflict_by_epoch(tel).sort_values("epoch")
    expected = steps.groupby("epoch")["conflict"].mean()
    np.testing.assert_allclose(by_epoch["conflict_fraction"].to_numpy(), expected.to_numpy())
    # epochs are 1-based in the Parquet, as in the console and Tune; the loop's (Tune's) conflict
    # fraction, the writer's epochs table and the report's query are one number
    assert by_epoch["epoch"].tolist() == [1, 2, 3]
    epochs = tel.sql("SELECT epoch, conflict_fraction FROM epochs ORDER BY epoch")
    history = load_checkpoint(run_dir / "checkpoints/last.pt", "dpda-train-state")["history"]
    np.testing.assert_allclose(epochs["conflict_fraction"], by_epoch["conflict_fraction"])
    np.testing.assert_allclose([h["conflict_fraction"] for h in history], by_epoch["conflict_fraction"])
    layers = tel.sql("SELECT count(*) AS n FROM layers")["n"].item()
    n_layers = len(tel.sql("SELECT DISTINCT layer FROM layers"))
    assert layers == state["global_step"] * n_layers
    # the rule column holds the alignment rule, the augment mode a column of its own
    written = tel.sql("SELECT DISTINCT rule, augment_mode, variant FROM steps")
    attempts = tel.sql("SELECT rule, augment_mode FROM attempts")
    config = json.loads((run_dir / "config.json").read_text())
    assert written.values.tolist() == [[config["align"]["rule"], config["augment"]["mode"], config["align"]["rule"]]]
    assert attempts.values.tolist() == [[config["align"]["rule"], config["augment"]["mode"]]]



@pytest.mark.parametrize("mode", ["augmented", "none"])
def test_a_run_without_a_dual_path_writes_rule_none(corpus: Path, tmp_path: Path, mode: str) -> None:
    """Without a dual path no rule aligns anything: the `rule` column says `none` whatever
    `align.rule` holds (as schema-2 files read), and the variant is the augment mode."""
    from dpda_analysis import open_telemetry

    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=2)
    raw["augment"]["mode"] = mode
    assert raw["align"]["rule"] != "none"
    Trainer(config_from_dict(raw), tmp_path / mode, progress=False).fit()
    with open_telemetry(tmp_path / mode) as tel:
        written = tel.sql("SELECT DISTINCT rule, augment_mode, variant FROM steps").values.tolist()
        attempts = tel.sql("SELECT rule, augment_mode FROM attempts").values.tolist()
    label = {"augmented": "augmented", "none": "no augmentation"}[mode]
    assert written == [["none", mode, label]] and attempts == [["none", mode]]


def test_batched_mode_trains_and_refuses_a_model_it_cannot_run(corpus: Path, tmp_path: Path) -> None:
    """`align.mode: batched` through the Trainer: the demo's tiny LCNN trains (finite losses, one
    telemetry row per step); RawNet2 (a GRU) is refused when the run builds its step, naming the key."""
    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=3)
    raw["align"]["mode"] = "batched"
    summary = Trainer(config_from_dict(raw), tmp_path / "lcnn", progress=False).fit()
    assert np.isfinite(summary["final_dev_eer"])
    import pyarrow.dataset as ds

    steps = ds.dataset(tmp_path / "lcnn" / "telemetry" / "steps", format="parquet").to_table().to_pandas()
    assert len(steps) == 3 and np.isfinite(steps[["loss_orig", "loss_aug", "cos"]].to_numpy()).all()
    raw["model"] = {"name": "rawnet2", "preset": "tiny"}
    with pytest.raises(UserError, match=r"align.mode: batched cannot run model RawNet2: gru is a GRU"):
        Trainer(config_from_dict(raw), tmp_path / "rawnet2", progress=False).fit()
    assert not list((tmp_path / "rawnet2").glob("checkpoints/*.pt"))  # before any step


def test_held_out_attacks_leave_train_and_dev_but_not_eval(tmp_path: Path) -> None:
    """`data.held_out_attacks` (a leave-attacks-out protocol): the attack's spoofs leave the
    training and dev manifests, in order, nothing else does; the eval sets keep it, so the
    averaged model scores it as an unseen attack; a name that is no training attack, or holding
    out every one, fails before any step, naming the key."""
    import pandas as pd
    from dpda.data.readers import load_corpus
    from support import write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=24, n_dev=16)
    train, dev = (f"asvspoof2019:{corpus}/LA:{s}" for s in ("train", "dev"))
    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=2)
    raw["data"].update(train=[train], dev=[dev], eval={"all_dev": [dev]}, held_out_attacks=["A04"])
    trainer = Trainer(config_from_dict(raw), tmp_path / "run", progress=False)
    trainer.fit()
    for manifest, spec in ((trainer.train_manifest, train), (trainer.dev_manifest, dev)):
        full = load_corpus(spec)
        kept = full[~((full["label"] == "spoof") & (full["attack"] == "A04"))]
        assert (full["attack"] == "A04").sum() > 0
        assert list(manifest["utt"]) == list(kept["utt"])
    breakdown = pd.read_csv(tmp_path / "run/eval/all_dev.breakdown.csv").set_index("value")
    full_dev = load_corpus(dev)
    assert breakdown.at["A04", "n_spoof"] == (full_dev["attack"] == "A04").sum()
    assert load_checkpoint(tmp_path / "run/model.pt")["config"]["data"]["held_out_attacks"] == ["A04"]

    for attacks, message in ((["A09"], r"data.held_out_attacks: 'A09' not among the training spoofs' attacks \(A02, A04, A06\)"),
                             (["A02", "A04", "A06"], "data.held_out_attacks: holds out every training attack")):
        raw["data"]["held_out_attacks"] = attacks
        with pytest.raises(UserError, match=message):
            Trainer(config_from_dict(raw), tmp_path / "bad", progress=False).fit()
        assert not list((tmp_path / "bad").glob("checkpoints/*.pt"))


@pytest.mark.parametrize(("cap", "ran"), [("dpda", 1), ("published", 2)])
def test_the_published_epoch_cap_runs_one_epoch_more(corpus: Path, tmp_path: Path, cap: str, ran: int) -> None:
    """The published main.py breaks once its 0-based epoch exceeds the cap: `epochs + 1` epochs."""
    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=1)
    raw["optim"]["epoch_cap"] = cap
    raw["optim"]["patience"] = 5  # early stopping out of the way
    Trainer(config_from_dict(raw), tmp_path / cap, progress=False).fit()
    history = load_checkpoint(tmp_path / cap / "checkpoints/last.pt", "dpda-train-state")["history"]
    assert [h["epoch"] for h in history] == list(range(ran))


def test_freeze_frontend_from_the_config(tmp_path):
    """`model.freeze_frontend: true` freezes an SSL model's front end when the Trainer builds it
    (the Trainer called a bool before), and is refused in one line for a model without one."""
    corpus = write_separable_corpus(tmp_path)
    raw = demo_dict(corpus)
    raw["model"] = {"name": "ssl_aasist", "preset": "tiny", "freeze_frontend": True}
    trainer = Trainer(config_from_dict(raw), tmp_path / "ssl", progress=False)
    trainer._build()  # what fit() builds first: corpora checked, model and optimiser made
    front = trainer.model.frontend.wav2vec2
    assert not any(p.requires_grad for p in front.parameters())
    assert any(p.requires_grad for p in trainer.model.backend.parameters())
    trainer.model.train()
    assert not front.training and trainer.model.backend.training
    trained = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for p in front.parameters()}
    raw["model"] = {**demo_dict(corpus)["model"], "freeze_frontend": True}
    with pytest.raises(UserError, match=r"model\.freeze_frontend: model \w+ has no SSL front end"):
        Trainer(config_from_dict(raw), tmp_path / "plain", progress=False)._build()
