"""Bad input (issue 15): each case ends in one clear line naming the file, line or key, a
non-zero status, and nothing lost or left behind."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from dpda.cli import main
from dpda.data.audio import AudioReadError, load_audio
from dpda.data.corpora import load_manifest
from dpda.errors import UserError

RNG = np.random.default_rng(0)
NOISE = RNG.uniform(-0.3, 0.3, 1600)  # 0.1 s at 16 kHz


def _wav(path: Path, rate: int = 16000, subtype: str = "PCM_16", values: np.ndarray = NOISE) -> Path:
    sf.write(path, values, rate, subtype=subtype)
    return path


# ------------------------------------------------------------------------------ dpda check: bad audio
def _one_hertz(path: Path) -> str:
    _wav(path, rate=1)
    return "implausible_sample_rate: {p}: sample rate 1 Hz is outside the accepted 8000-48000 Hz"


def _too_fast(path: Path) -> str:
    _wav(path, rate=96000)
    return "implausible_sample_rate: {p}: sample rate 96000 Hz is outside the accepted 8000-48000 Hz"


def _cut_pcm(path: Path) -> str:
    data = _wav(path).read_bytes()  # 44-byte header, then 3200 bytes of samples
    path.write_bytes(data[: 44 + 3200 // 3])
    return "unreadable_audio: {p}: truncated (the WAV data chunk declares 3200 bytes, 1066 are present)"


def _loud(path: Path) -> str:
    values = NOISE.copy()
    values[100] = 1e30
    _wav(path, subtype="FLOAT", values=values)
    return "peak_above_limit: {p}: peak amplitude 1e+30 is above 100 (full scale is 1.0)"


def _folder(path: Path) -> str:
    path.mkdir()
    return "not_a_regular_file: {p}: a folder, not a regular file"


BAD_AUDIO: dict[str, Callable[[Path], str]] = {
    "1 Hz": _one_hertz, "96 kHz": _too_fast, "cut PCM": _cut_pcm, "1e30 peak": _loud, "folder": _folder,
}


def _corpus(tmp_path: Path, bad_name: str) -> tuple[Path, Path]:
    """A CSV corpus: line 2 a good file, line 3 `bad_name` (made by the caller)."""
    _wav(tmp_path / "good.wav")
    csv = tmp_path / "list.csv"
    csv.write_text(f"path,label,utt\ngood.wav,bonafide,g\n{bad_name},spoof,b\n")
    return csv, tmp_path / bad_name


@pytest.mark.parametrize("make", BAD_AUDIO.values(), ids=BAD_AUDIO.keys())
def test_check_reports_bad_audio_with_its_line(tmp_path: Path, make, capsys) -> None:
    csv, bad = _corpus(tmp_path, "bad.wav")
    line = make(bad).format(p=bad)
    assert main(["check", str(csv)]) == 1
    out = capsys.readouterr().out.splitlines()
    kind = line.split(":", 1)[0]
    assert f"    {csv}:3: {line}" in out
    assert f"    1 problem(s) in 1 of 2 rows ({kind}: 1)" in out


def test_check_never_opens_a_fifo(tmp_path: Path, capsys) -> None:
    """A FIFO named *.wav is reported from os.stat. Should anything open it, a writer feeds it a
    valid WAV, so a regression fails the assertions instead of hanging the test."""
    csv, fifo = _corpus(tmp_path, "pipe.wav")
    os.mkfifo(fifo)
    payload = _wav(tmp_path / "payload.wav").read_bytes()
    stop = threading.Event()

    def feed() -> None:  # each open() blocks until a reader appears
        while not stop.is_set():
            try:
                fifo.write_bytes(payload)
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        assert main(["check", str(csv)]) == 1
    finally:
        stop.set()
        release = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader: the pending open() returns
        writer.join()
        os.close(release)
    out = capsys.readouterr().out.splitlines()
    assert f"    {csv}:3: not_a_regular_file: {fifo}: a FIFO (named pipe), not a regular file" in out
    assert fifo.exists()


def test_check_sample_rate_range_is_an_option(tmp_path: Path, capsys) -> None:
    csv, bad = _corpus(tmp_path, "bad.wav")
    _wav(bad, rate=96000)
    assert main(["check", str(csv), "--sample-rates", "8000-96000"]) == 0
    assert "  ok: no problems" in capsys.readouterr().out.splitlines()
    assert main(["check", str(csv), "--sample-rates", "96000-8000"]) == 2
    assert capsys.readouterr().err == (
        "dpda check: error: --sample-rates: expected MIN-MAX in Hz with 0 < MIN <= MAX, e.g. 8000-48000, "
        "got '96000-8000'\n")


def test_check_headers_only_still_sees_rate_and_cut_data(tmp_path: Path, capsys) -> None:
    _wav(tmp_path / "good.wav")
    _one_hertz(tmp_path / "slow.wav")
    _cut_pcm(tmp_path / "cut.wav")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\ngood.wav,bonafide\nslow.wav,spoof\ncut.wav,spoof\n")
    assert main(["check", str(csv), "--decode", "none"]) == 1
    assert "    2 problem(s) in 2 of 3 rows (unreadable_audio: 1, implausible_sample_rate: 1)" in (
        capsys.readouterr().out.splitlines())


@pytest.mark.parametrize("make", [_one_hertz, _folder], ids=["1 Hz", "folder"])
def test_load_audio_refuses_before_decoding(tmp_path: Path, make) -> None:
    bad = tmp_path / "bad.wav"
    line = make(bad).format(p=bad)
    with pytest.raises(AudioReadError) as err:
        load_audio(bad)
    assert str(err.value) == line.split(": ", 1)[1]


# ------------------------------------------------------------------------------ empty corpora, shared ids
def _empty_2019(root: Path) -> tuple[str, Path]:
    proto = root / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    proto.parent.mkdir(parents=True)
    proto.write_text("")
    return f"asvspoof2019:{root}:train", proto


def _empty_csv(root: Path) -> tuple[str, Path]:
    (root / "e.csv").write_text("path,label,utt\n")
    return f"csv:{root}/e.csv", root / "e.csv"


@pytest.mark.parametrize("make", [_empty_2019, _empty_csv], ids=["asvspoof2019", "csv"])
def test_empty_corpus_is_an_error_naming_spec_and_file(tmp_path: Path, make, capsys) -> None:
    spec, source = make(tmp_path)
    message = f"corpus {spec}: no trials in {source}"
    assert main(["check", spec]) == 2
    assert capsys.readouterr().out.splitlines() == [f"== {spec}", f"  error: {message}"]
    with pytest.raises(UserError) as err:
        load_manifest([spec], "skip", "train")
    assert str(err.value) == message


def _demo_config(tmp_path: Path, train: list[str], dev: list[str], evals: dict | None = None) -> Path:
    raw = yaml.safe_load(Path(__file__).parents[1].joinpath("configs/demo.yaml").read_text())
    raw["data"].update(train=train, dev=dev, eval=evals or {}, num_workers=0)
    raw["device"] = "cpu"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _two_corpora(tmp_path: Path) -> tuple[Path, Path]:
    for name in ("x", "y", "z"):
        _wav(tmp_path / f"{name}.wav")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("path,label,utt\nx.wav,bonafide,u1\ny.wav,spoof,u2\n")
    b.write_text("path,label,utt\nz.wav,spoof,u3\ny.wav,spoof,u2\nx.wav,bonafide,u1\n")
    return a, b


def test_train_stops_on_an_empty_corpus_and_writes_nothing(tmp_path: Path, capsys) -> None:
    a, _ = _two_corpora(tmp_path)
    spec, source = _empty_csv(tmp_path)
    run = tmp_path / "run"
    assert main(["-q", "train", str(_demo_config(tmp_path, [f"csv:{a}"], [spec])), "-o", str(run)]) == 2
    assert capsys.readouterr().err == f"dpda train: error: data.dev[0]: corpus {spec}: no trials in {source}\n"
    assert not run.exists()


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_load_manifest_refuses_ids_shared_by_two_corpora(tmp_path: Path, policy: str) -> None:
    a, b = _two_corpora(tmp_path)
    with pytest.raises(UserError) as err:
        load_manifest([f"csv:{a}", f"csv:{b}"], policy, "dev")
    assert str(err.value) == (
        f"dev: 2 utterance id(s) in more than one corpus, the first 'u2' in csv:{a} ({a}:3) and csv:{b} ({b}:3)")
    with pytest.raises(UserError) as err:
        load_manifest([f"csv:{a}", str(a)], policy, "dev")
    assert str(err.value) == (
        f"dev: 2 utterance id(s) in more than one corpus, the first 'u1' in csv:{a} ({a}:2) and {a} ({a}:2)")


def test_check_reports_ids_shared_across_the_specs_given(tmp_path: Path, capsys) -> None:
    a, b = _two_corpora(tmp_path)
    assert main(["check", str(a), str(b)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[out.index("== across corpora"):] == [
        "== across corpora",
        "  problems:",
        f"    {b}:3: duplicate_utt: utt 'u2' of {b} is also in {a} at {a}:3",
        f"    {b}:4: duplicate_utt: utt 'u1' of {b} is also in {a} at {a}:2",
        "    2 utterance id(s) in more than one corpus",
    ]
    assert main(["check", str(a), str(a), "--policy", "skip", "--max-problems", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[out.index("== across corpora"):] == [
        "== across corpora", "  problems:", f"    {a}:2: duplicate_utt: utt 'u1' of {a} is also in {a} at {a}:2",
        "    ... and 1 more", "    2 utterance id(s) in more than one corpus",
    ]


def test_train_stops_on_a_corpus_listed_twice_and_writes_nothing(tmp_path: Path, capsys) -> None:
    a, b = _two_corpora(tmp_path)
    run = tmp_path / "run"
    cfg = _demo_config(tmp_path, [f"csv:{a}", f"csv:{a}"], [f"csv:{b}"])
    assert main(["-q", "train", str(cfg), "-o", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"dpda train: error: data.train: 2 utterance id(s) in more than one corpus, the first 'u1' in "
        f"csv:{a} ({a}:2) and csv:{a} ({a}:2)\n")
    assert not run.exists()


# ------------------------------------------------------------------------------ data.eval, before training
def _no_training_step(monkeypatch) -> None:
    from dpda.train.loop import Trainer

    def refuse(*args, **kwargs):
        raise AssertionError("a training step ran before data.eval was checked")

    monkeypatch.setattr(Trainer, "_train_epoch", refuse)


def test_train_stops_on_a_typo_in_a_data_eval_path_before_the_first_step(tmp_path: Path, capsys, monkeypatch) -> None:
    """The eval sets are scored after the last epoch; a typo there must not wait for it."""
    _no_training_step(monkeypatch)
    a, b = _two_corpora(tmp_path)
    typo = tmp_path / "evl.csv"
    run = tmp_path / "run"
    cfg = _demo_config(tmp_path, [f"csv:{a}"], [f"csv:{b}"], {"mine": [f"csv:{a}"], "other": [f"csv:{a}", f"csv:{typo}"]})
    assert main(["-q", "train", str(cfg), "-o", str(run)]) == 2
    assert capsys.readouterr().err == f"dpda train: error: data.eval.other[1]: {typo}: CSV file not found\n"
    assert not run.exists()


def test_train_stops_on_ids_shared_by_the_corpora_of_one_eval_set(tmp_path: Path, capsys, monkeypatch) -> None:
    _no_training_step(monkeypatch)
    a, b = _two_corpora(tmp_path)
    run = tmp_path / "run"
    cfg = _demo_config(tmp_path, [f"csv:{a}"], [f"csv:{b}"], {"both": [f"csv:{a}", f"csv:{b}"]})
    assert main(["-q", "train", str(cfg), "-o", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"dpda train: error: data.eval.both: 2 utterance id(s) in more than one corpus, the first 'u2' in "
        f"csv:{a} ({a}:3) and csv:{b} ({b}:3)\n")
    assert not run.exists()


def test_the_search_pre_flight_checks_every_eval_set(tmp_path: Path) -> None:
    """What a search's driver (and a multi-worker run) checks before any trial: the same lines."""
    from dpda.data.check_cache import check_config_corpora

    a, b = _two_corpora(tmp_path)
    typo = tmp_path / "evl.csv"
    data = {"train": [f"csv:{a}"], "dev": [f"csv:{b}"], "check": "fail"}
    with pytest.raises(UserError) as err:
        check_config_corpora({"data": {**data, "eval": {"mine": [f"csv:{typo}"]}}})
    assert str(err.value) == f"data.eval.mine[0]: {typo}: CSV file not found"
    with pytest.raises(UserError, match=r"^data\.eval\.both: 2 utterance id\(s\) in more than one corpus"):
        check_config_corpora({"data": {**data, "eval": {"both": [f"csv:{a}", f"csv:{b}"]}}})
    # one id in two sets is fine: each set has its own score file (<name>.scores.txt)
    verdicts = check_config_corpora({"data": {**data, "eval": {"x": [f"csv:{a}"], "y": [f"csv:{a}"]}}})
    assert len(verdicts) == 2


# ------------------------------------------------------------------------------ dpda report: bad parts
@pytest.fixture()
def experiment(tmp_path: Path) -> Path:
    from synthetic_telemetry import write_synthetic_experiment

    write_synthetic_experiment(tmp_path, trials=2, steps=60, layers=3, steps_per_epoch=20, restart_trials=0, seed=1)
    return tmp_path / "synthetic_exp"


def _second_part(experiment: Path, table: str) -> Path:
    return sorted(experiment.glob(f"*/telemetry/{table}/attempt-*/part-*.parquet"))[1]


@pytest.mark.parametrize("table", ["steps", "layers"])
def test_report_leaves_out_a_part_cut_short_and_says_which(experiment: Path, table: str, capsys) -> None:
    import pyarrow.parquet as pq

    import dpda_analysis as A

    cut = _second_part(experiment, table)
    files = sorted(experiment.glob(f"*/telemetry/{table}/attempt-*/part-*.parquet"))
    kept = sum(pq.read_metadata(f).num_rows for f in files if f != cut)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = experiment / "report.html"
    assert main(["-q", "report", str(experiment), "--html", str(out)]) == 0
    assert capsys.readouterr().err == (
        f"dpda report: warning: {cut}: left out, not a readable Parquet file (No magic bytes found at end of file)\n")
    assert f"part files left out (not readable Parquet)</th><td>{cut}</td>" in out.read_text(encoding="utf-8")
    assert cut.read_bytes() == data[: len(data) // 2]  # the part is left as it was
    with pytest.warns(A.AnalysisWarning, match="left out"), A.open_telemetry(experiment) as tel:
        assert tel.skipped == [str(cut)]
        assert tel.sql(f"SELECT count(*) AS n FROM {table}")["n"].item() == kept


def _drop_cos(table):
    return table.drop_columns(["cos"])


def _float_step(table):
    import pyarrow as pa

    return table.set_column(table.schema.get_field_index("step"), "step", table["step"].cast(pa.float64()))


@pytest.mark.parametrize(("change", "problem"), [
    (_drop_cos, "no column 'cos', which the steps table needs"),
    (_float_step, "column 'step' is DOUBLE, the steps table needs BIGINT"),
], ids=["missing", "mistyped"])
def test_report_names_the_file_and_column_of_a_foreign_part(experiment: Path, change, problem: str, capsys) -> None:
    import pyarrow.parquet as pq

    part = _second_part(experiment, "steps")
    table = pq.read_table(part)
    pq.write_table(change(table).replace_schema_metadata(table.schema.metadata), part)
    out = experiment / "report.html"
    out.write_text("the previous report")
    assert main(["-q", "report", str(experiment), "--html", str(out)]) == 2
    assert capsys.readouterr().err == f"dpda report: error: {part}: {problem}\n"
    assert out.read_text() == "the previous report"


# ------------------------------------------------------------------------------ missing parts (by their numbers)
def _parts_of(experiment: Path, trial: str, number: int) -> dict[str, Path]:
    """table -> the part numbered `number` of the first attempt of the trial dir starting with `trial`."""
    run = next(experiment.glob(f"{trial}*"))
    return {f.parts[-3]: f for f in sorted(run.glob(f"telemetry/*/attempt-0/part-{number:05d}.parquet"))}


@pytest.mark.parametrize("deleted", [("steps",), ("steps", "layers", "epochs")], ids=["steps part", "whole flush"])
def test_a_missing_middle_part_is_reported_by_every_reader(experiment: Path, deleted: tuple[str, ...], tmp_path: Path,
                                                            capsys) -> None:
    """The writer numbers an attempt's parts with one counter (steps and layers of a flush share
    theirs): a number below the last that some table lacks is a part that was deleted."""
    import dpda_analysis as A
    from dpda_analysis.errors import MissingPartsWarning

    parts = _parts_of(experiment, "train_fn_00001", 3)  # the middle of parts 2, 3, 4
    assert set(parts) == {"steps", "layers", "epochs"}
    run = parts["steps"].parents[3]
    with A.open_telemetry(experiment) as tel:
        full = tel.sql("SELECT count(*) AS n FROM steps")["n"].item()
    for table in deleted:
        parts[table].unlink()
    what = "part-00003 (steps)" if deleted == ("steps",) else "part-00003"
    line = f"{run}: telemetry part(s) missing, deleted or never copied: attempt-0 {what}; their rows are absent"
    with pytest.warns(MissingPartsWarning) as caught, A.open_telemetry(experiment) as tel:
        assert tel.missing == [line]
        assert tel.sql("SELECT count(*) AS n FROM steps")["n"].item() == full - 20
    assert [str(w.message) for w in caught] == [line]

    out = tmp_path / "report.html"
    assert main(["-q", "report", str(experiment), "--html", str(out)]) == 0  # a report: shown, figures still made
    assert capsys.readouterr().err == f"dpda report: warning: {line}\n"
    assert f"telemetry parts missing (their rows are absent)</th><td>{line}</td>" in out.read_text(encoding="utf-8")

    steps = tmp_path / "steps.parquet"  # an export is a file others trust whole: refused unless asked
    assert main(["export", str(experiment), "-o", str(steps)]) == 2
    assert capsys.readouterr().err == (
        f"dpda export: error: {line}; not exported (--allow-missing-parts exports the rows that are there)\n")
    assert not steps.exists()
    assert main(["export", str(experiment), "-o", str(steps), "--allow-missing-parts"]) == 0
    assert capsys.readouterr().err == f"dpda export: warning: {line}\n"


def test_the_last_part_in_progress_is_not_missing(experiment: Path, capsys) -> None:
    """A writer killed between the steps and the layers part of its last flush (or still writing
    it) leaves the last number incomplete: that is not a deleted part."""
    import warnings

    import dpda_analysis as A

    _parts_of(experiment, "train_fn_00001", 4)["layers"].unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with A.open_telemetry(experiment) as tel:
            assert tel.missing == []
    assert main(["-q", "export", str(experiment), "-o", str(experiment / "steps.parquet")]) == 0
    assert capsys.readouterr().err == ""


def test_a_run_being_written_is_not_missing_parts(tmp_path: Path) -> None:
    """Read while the writer writes: each listing is a moment, and the writer adds parts between
    the listings of two tables. A number counts as missing only when a second listing, made after
    a later number existed, still lacks it."""
    import warnings

    import dpda_analysis as A
    from dpda.telemetry.writer import TelemetryWriter
    from dpda_analysis import gaps

    from dpda_analysis.schema import LAYER_STAT_KEYS, STEP_STAT_KEYS

    stats = {**dict.fromkeys(STEP_STAT_KEYS, 0.5), "skipped": False, "conflict": False,
             **{k: [0.5] for k in LAYER_STAT_KEYS}}
    with TelemetryWriter(tmp_path / "run", "r", "t", 0, ["w"], flush_every=1) as writer:
        for step in range(5):
            writer.log_step(step, 1, {k: list(v) if isinstance(v, list) else v for k, v in stats.items()}, 0.1)
            writer.flush(wait=True)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with A.open_telemetry(tmp_path / "run") as tel:
                    assert tel.missing == []
                    assert tel.sql("SELECT count(*) AS n FROM steps")["n"].item() == step + 1

    def part(table: str, n: int) -> str:
        return f"/x/run/telemetry/{table}/attempt-0/part-{n:05d}.parquet"

    early = [part("attempts", 0), part("layer_names", 1), part("steps", 2), part("layers", 2), part("steps", 3)]
    raced = early + [part("layers", 4)]  # layers listed after the writer finished flushes 3 and 4
    later = early + [part("layers", 3), part("steps", 4), part("layers", 4)]
    assert [(m.number, m.table) for m in gaps.find_missing(raced)] == [(3, "layers")]  # one listing is fooled
    assert gaps.missing_parts(raced, lambda: later) == []  # the second listing clears it
    deleted = [f for f in later if f != part("steps", 3)]
    assert [(m.run, m.attempt, m.number, m.table) for m in gaps.missing_parts(deleted, lambda: deleted)] == [
        ("/x/run", 0, 3, "steps")]


# ------------------------------------------------------------------------------ dpda export: into its own input
@pytest.mark.parametrize("target", ["a part", "beside the parts", "relative", "a link to a part"])
def test_export_refuses_to_write_into_the_telemetry_it_reads(experiment: Path, target: str, monkeypatch,
                                                              capsys) -> None:
    part = _second_part(experiment, "steps")
    telemetry = part.parents[2]  # RUN/telemetry/steps/attempt-0/part-N.parquet
    monkeypatch.chdir(experiment)
    out = {"a part": part, "beside the parts": telemetry / "steps.parquet",
           "relative": Path(telemetry.parent.name) / "telemetry" / ".." / "telemetry" / "layers" / "x.parquet",
           "a link to a part": experiment / "link.parquet"}[target]
    if target == "a link to a part":
        out.symlink_to(part)
    before = {f: f.read_bytes() for f in telemetry.rglob("*") if f.is_file()}
    assert main(["export", str(experiment), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"dpda export: error: {out}: inside the telemetry it reads ({telemetry}); write the export elsewhere\n")
    assert {f: f.read_bytes() for f in telemetry.rglob("*") if f.is_file()} == before  # nothing written or replaced
    assert main(["export", str(experiment), "-o", str(telemetry.parent / "steps.parquet")]) == 0  # the run dir is fine


# ------------------------------------------------------------------------------ dpda score / predict
def _keys_csv(path: Path, labels: list[str]) -> Path:
    path.write_text("path,label,utt\n" + "".join(f"u{i}.wav,{lab},u{i}\n" for i, lab in enumerate(labels)))
    return path


def _keys_2019(path: Path, labels: list[str]) -> Path:
    path.write_text("".join(f"LA_0001 u{i} - {'-' if lab == 'bonafide' else 'A01'} {lab}\n"
                            for i, lab in enumerate(labels)))
    return path


@pytest.mark.parametrize("write_keys", [_keys_csv, _keys_2019], ids=["csv", "2019 protocol"])
@pytest.mark.parametrize(("label", "missing"), [("spoof", "bona fide"), ("bonafide", "spoof")])
def test_score_refuses_keys_without_one_class(tmp_path: Path, write_keys, label: str, missing: str, capsys) -> None:
    keys = write_keys(tmp_path / ("keys.csv" if write_keys is _keys_csv else "keys.txt"), [label] * 3)
    scores = tmp_path / "scores.txt"
    scores.write_text("u0 0.5\nu1 -1.0\nu2 2.0\n")
    assert main(["score", str(scores), str(keys)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"dpda score: error: {keys}: no {missing} trial among the 3 trials; "
                            "the EER needs both bona fide and spoof trials\n")


def test_score_names_a_key_file_of_one_column(tmp_path: Path, capsys) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("u0\nu1\n")
    (tmp_path / "scores.txt").write_text("u0 0.5\nu1 -1.0\n")
    assert main(["score", str(tmp_path / "scores.txt"), str(keys)]) == 2
    assert capsys.readouterr().err == (
        f"dpda score: error: {keys}: first line has 1 field; expected an ASVspoof 2019 protocol "
        "or 2021 trial_metadata.txt (or a corpus spec)\n")


EXPECTED_METRICS = "the metrics.json of dpda eval, a list of objects with 'set' and 'threshold'"


@pytest.mark.parametrize(("text", "problem"), [
    ("set,threshold\ndev,0.5\n", f"{{f}}:1: not JSON (Expecting value); expected {EXPECTED_METRICS}"),
    ('{"dev": 0.5}', f"{{f}}: expected {EXPECTED_METRICS}"),
    ('[{"set": "dev", "eer": 0.1}]', f"{{f}}: expected {EXPECTED_METRICS}"),
    ('[{"set": "dev", "threshold": NaN}]', "{f}: set 'dev': threshold nan is not a finite number"),
    ('[{"set": "dev", "threshold": "0.5"}]', "{f}: set 'dev': threshold '0.5' is not a finite number"),
    (None, "{f}: no such metrics file"),
], ids=["csv", "object", "no threshold", "NaN", "string", "missing"])
def test_predict_refuses_a_bad_threshold_file(tmp_path: Path, text: str | None, problem: str, capsys) -> None:
    metrics = tmp_path / "metrics.json"
    if text is not None:
        metrics.write_text(text)
    assert main(["predict", str(tmp_path / "model.pt"), str(tmp_path / "a.wav"), "--threshold-from", str(metrics)]) == 2
    assert capsys.readouterr().err == f"dpda predict: error: {problem.format(f=metrics)}\n"


@pytest.mark.parametrize("value", ["nan", "inf", "NaN"])
def test_predict_refuses_a_threshold_that_is_not_finite(tmp_path: Path, value: str, capsys) -> None:
    assert main(["predict", str(tmp_path / "model.pt"), str(tmp_path / "a.wav"), "--threshold", value]) == 2
    assert capsys.readouterr().err == f"dpda predict: error: --threshold: must be a finite number, got {float(value)!r}\n"


# ------------------------------------------------------------------------------ dpda predict: non-finite scores
@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    """An untrained (finite) demo model saved as a dpda model file."""
    import torch

    from dpda.models import build_model
    from dpda.train.checkpoint import save_checkpoint
    from dpda.train.config import config_from_dict
    from dpda.train.model_file import MODEL_FORMAT
    from support import demo_dict

    cfg = config_from_dict(demo_dict(tmp_path))
    torch.manual_seed(0)
    model = build_model(cfg.model.name, cfg.model.preset, **cfg.model.overrides)
    path = tmp_path / "model.pt"
    save_checkpoint({"format": MODEL_FORMAT, "model": model.state_dict(), "config": cfg.to_dict(), "dev_threshold": 0.0},
                    path)
    return path


def test_predict_blames_a_file_that_overflows_a_finite_model(tmp_path: Path, model_file: Path, capsys) -> None:
    """Samples of 1e30 are finite, but the model's output on them is not: the file is at fault,
    not the weights (which are finite), and the message says so by the file's name and peak."""
    good, loud = _wav(tmp_path / "good.wav"), tmp_path / "loud.wav"
    _loud(loud)
    assert main(["predict", str(model_file), str(good)]) == 0
    capsys.readouterr()
    assert main(["predict", str(model_file), str(good), str(loud)]) == 2
    assert capsys.readouterr().err == (
        f"dpda predict: error: {loud}: the model's score is not finite on this file (1 of 2 files) though its "
        "weights are finite: the audio overflows the model: peak amplitude 1e+30 is above 100 (full scale is 1.0)\n")
