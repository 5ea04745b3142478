"""The command line as people use it: numbers as people write them, progress in logs, one meaning
per option, quiet and verbose, pipes closed early, and file-system errors as one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dpda import console
from dpda.cli import COMMANDS, SIGPIPE_STATUS, main
from dpda.errors import UserError
from dpda.train.config import load_config
from dpda.tune.search_space import load_search_space
from dpda.yaml_io import load_yaml, parse_set, read_yaml

ROOT = Path(__file__).resolve().parents[1]
DPDA = Path(sys.executable).with_name("dpda")
TINY = ["--train", "6", "--dev", "4", "--eval", "4", "--itw", "4", "--min-seconds", "0.3", "--max-seconds", "0.5",
        "--processes", "0"]


@pytest.fixture(autouse=True)
def _normal_verbosity():
    yield
    console.set_verbosity(console.NORMAL)  # main() sets it per call; keep other tests unaffected


# ---------------------------------------------------------------------------------------------
# numbers written as people write them


@pytest.mark.parametrize(("text", "value"), [
    ("1e-6", 1e-6), ("5e-4", 5e-4), ("1E3", 1000.0), ("1.0e6", 1e6), ("-2.5E-3", -2.5e-3), (".5e-3", 5e-4),
    ("+1e2", 100.0), ("0.001", 0.001), ("3", 3), (".inf", float("inf")), ("2.60", 2.6),
    ("1e", "1e"), ("e5", "e5"), ("1e-6x", "1e-6x"), ("v1e3", "v1e3"), ("'1e-6'", "1e-6"),
])
def test_yaml_reads_yaml12_floats_and_keeps_strings(text, value):
    got = load_yaml(f"x: {text}", "t.yaml")["x"]
    assert got == value and type(got) is type(value)


def test_yaml_stays_safe():
    with pytest.raises(UserError, match=r"^t\.yaml:1: invalid YAML"):
        load_yaml("x: !!python/object/apply:os.system ['true']", "t.yaml")


def test_1e6_is_a_float_in_a_config_file_a_search_space_and_set(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model: {name: aasist, preset: tiny}\noptim:\n  lr: 1e-6\n  weight_decay: 1E-4\n")
    cfg = load_config(config)
    assert cfg.optim.lr == 1e-6 and cfg.optim.weight_decay == 1e-4
    cfg = load_config(config, parse_set(["optim.lr=5e-4", "optim.weight_decay=0"]))
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)
    space = tmp_path / "space.yaml"
    space.write_text("base: config.yaml\nset:\n  optim.lr: 2e-5\nsearch:\n  optim.weight_decay: {loguniform: [1e-6, 1e-3]}\n")
    loaded = load_search_space(space, overrides=parse_set(["optim.epochs=2"]))
    (param,) = loaded.params
    assert (param.kind, param.low, param.high) == ("loguniform", 1e-6, 1e-3)
    assert loaded.base["optim"]["lr"] == 2e-5


def test_set_syntax_errors_are_one_line():
    with pytest.raises(UserError, match=r"^--set 'optim\.lr=\[1,': invalid YAML"):
        parse_set(["optim.lr=[1,"])
    with pytest.raises(UserError, match=r"^--set 'optim\.lr': expected KEY=VALUE"):
        parse_set(["optim.lr"])


@pytest.mark.parametrize(("content", "message"), [
    (None, "is a folder, not a config file"),
    (b"seed: 1\nname: caf\xe9\n", r"not UTF-8 text \(byte 17\)"),
])
def test_unreadable_yaml_is_one_line(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.mkdir() if content is None else path.write_bytes(content)
    with pytest.raises(UserError, match=rf"c\.yaml: {message}"):
        read_yaml(path, "config file")


# ---------------------------------------------------------------------------------------------
# progress in logs, quiet and verbose


def _plain_progress(err: str, desc: str) -> list[str]:
    assert "\r" not in err  # no carriage-return frames in a log
    return [line for line in err.splitlines() if line.startswith(f"{desc}: ")]


def test_synth_and_check_print_plain_progress_lines_when_not_a_terminal(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "c"), *TINY]) == 0
    captured = capsys.readouterr()
    lines = _plain_progress(captured.err, "synthesising")
    assert lines and re.fullmatch(r"synthesising: (\d+)/\1 batches \(100%, \d+ s\)", lines[-1])
    assert "corpus specs:" in captured.out
    assert main(["check", f"asvspoof2019:{tmp_path / 'c'}/LA:train"]) == 0
    lines = _plain_progress(capsys.readouterr().err, "checking audio")
    assert lines[-1].startswith("checking audio: 6/6 files (100%")


def test_progress_lines_every_tenth_then_a_final_line(monkeypatch):
    import io

    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    with console.Progress(40, "work", "items", stream=out, after_s=0) as bar:
        for _ in range(40):
            bar.update()
    lines = out.getvalue().splitlines()
    assert [int(re.match(r"work: (\d+)/40", line).group(1)) for line in lines] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_results_only(tmp_path, capsys, where):
    argv = ["synth", str(tmp_path / "c"), *TINY]
    assert main(["-q", *argv] if where == "before" else [*argv, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert [line.split()[0] for line in captured.out.splitlines()] == ["train", "dev", "eval", "itw"]


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as info:
        main(["-q", "-v", "doctor"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_verbose_shows_the_traceback_behind_the_error_line(tmp_path, capsys):
    assert main(["-v", "train", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].endswith("missing.yaml: no such config file")


# ---------------------------------------------------------------------------------------------
# one meaning per option name; help that says what the command does


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_quiet_verbose_and_honest_help(command, capsys):
    text = _help(command, capsys)
    assert "-q, --quiet" in text and "-v, --verbose" in text
    if command != "score":  # only `dpda score` computes a t-DCF (with --asv-scores)
        assert "t-DCF" not in text
    if "--workers" in text:  # one meaning: Ray Train workers
        assert command in ("train", "tune")
    if re.search(r"-o\b", text):  # one meaning: the folder the command writes into
        assert re.search(r"-o (DIR|OUT|RUN_DIR)|-o, --out", text), text


@pytest.mark.parametrize(("argv", "old", "new"), [
    (["synth", "{tmp}/c", *TINY[:-2], "--workers", "0"], "--workers", "--processes"),
    (["report", "{tmp}/nothing", "-o", "{tmp}/r.html"], "-o", "--html"),
])
def test_old_spellings_still_work_with_a_deprecation_line(tmp_path, capsys, argv, old, new):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert f"{old} is deprecated, use {new}" in err
    if argv[0] == "synth":
        assert code == 0 and (tmp_path / "c" / "README.txt").exists()
    else:  # the old -o reached --html: the error is about the missing telemetry, not the option
        assert code == 2 and "nothing" in err


# ---------------------------------------------------------------------------------------------
# pipes closed early and file-system errors


@pytest.fixture(scope="module")
def score_files(tmp_path_factory) -> tuple[Path, Path]:
    """A 2019-style protocol and a score file long enough to fill any pipe buffer."""
    root = tmp_path_factory.mktemp("scores")
    n = 4000
    attacks = ["-"] * (n // 4) + [f"A0{1 + i % 6}" for i in range(n - n // 4)]
    keys = root / "protocol.txt"
    keys.write_text("".join(f"LA_{i % 40:04d} LA_T_{i:07d} - {a} {'bonafide' if a == '-' else 'spoof'}\n"
                            for i, a in enumerate(attacks)))
    scores = root / "scores.txt"
    scores.write_text("".join(f"LA_T_{i:07d} {(1.0 if a == '-' else -1.0) + (i % 97) / 50:.4f}\n"
                              for i, a in enumerate(attacks)))
    return scores, keys


def test_score_into_a_pipe_closed_early_ends_quietly(score_files):
    scores, keys = score_files
    argv = [str(DPDA), "score", str(scores), str(keys), "--by", "speaker"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == SIGPIPE_STATUS
    assert err == ""
    shell = subprocess.run(f"set -o pipefail; '{DPDA}' score '{scores}' '{keys}' --by speaker | head -1",
                           shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert shell.stdout.startswith("trials: 1000 bona fide, 3000 spoof")
    assert shell.returncode in (0, SIGPIPE_STATUS) and "Traceback" not in shell.stderr


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    from synthetic_telemetry import write_synthetic_experiment

    root = tmp_path_factory.mktemp("exp")
    write_synthetic_experiment(root, trials=2, steps=20, layers=2, steps_per_epoch=10, seed=1)
    return root / "synthetic_exp"


def test_report_prints_progress_per_figure(experiment, tmp_path, capsys):
    from dpda_analysis.report import FIGURE_ORDER

    assert main(["report", str(experiment), "--html", str(tmp_path / "r.html")]) == 0
    lines = _plain_progress(capsys.readouterr().err, "report")
    assert lines[-1].startswith(f"report: {len(FIGURE_ORDER)}/{len(FIGURE_ORDER)} figures (100%")


@pytest.mark.parametrize("command", ["synth", "report"])
def test_an_unwritable_output_path_is_one_line(tmp_path, capsys, experiment, command):
    blocker = tmp_path / "a_file"  # a file where a folder must go: root cannot write there either
    blocker.write_text("not a folder")
    out = blocker / "out"
    argv = {"synth": ["synth", str(out), *TINY],
            "report": ["report", str(experiment), "--html", str(out / "r.html")]}[command]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not any("Traceback" in line for line in err)
    assert err[-1].startswith(f"dpda {command}: error: {blocker}") and err[-1].endswith(": Not a directory")
    assert not out.exists() and blocker.read_text() == "not a folder"
