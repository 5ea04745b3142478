"""Test helpers shared by several test modules: tiny corpora on disk and a tiny model with a
batch whose two paths often conflict. (pytest puts tests/ on sys.path, so `import support`.)"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def write_tiny_corpus(root: Path, n_train: int = 32, n_dev: int = 16, seconds: float = 0.5, seed: int = 0) -> Path:
    """A small ASVspoof 2019 LA-layout corpus in about a second: bona fide = harmonic tones,
    spoof = tones with a noisy, band-limited spectrum. Learnable, not trivial."""
    rng = np.random.default_rng(seed)
    la = root / "LA"
    proto_dir = la / "ASVspoof2019_LA_cm_protocols"
    proto_dir.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    for subset, n, suffix in (("train", n_train, "train.trn"), ("dev", n_dev, "dev.trl")):
        audio = la / f"ASVspoof2019_LA_{subset}" / "flac"
        audio.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            bona = i % 2 == 0
            f0 = rng.uniform(100, 220)
            k = np.arange(1, 12)[:, None]
            amps = (1.0 / k) * (rng.uniform(0.5, 1.0, (11, 1)) if bona else np.exp(-0.6 * k))
            wave = (amps * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3, (11, 1)))).sum(0)
            wave += rng.normal(0, 0.02 if bona else 0.15, t.size)
            wave = (0.3 * wave / np.abs(wave).max()).astype(np.float32)
            utt = f"LA_{subset[0].upper()}_{i:05d}"
            sf.write(audio / f"{utt}.flac", wave, 16000)
            lines.append(f"LA_{i % 4:04d} {utt} - {'-' if bona else 'A0' + str(1 + i % 6)} {'bonafide' if bona else 'spoof'}")
        (proto_dir / f"ASVspoof2019.LA.cm.{suffix}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_separable_corpus(root: Path, seed: int = 0) -> Path:
    """Harmonic tones; the spoof copies carry a 4-7 kHz noise band. Easy on purpose: the test is
    that the trainer learns (labels, gradients and updates are wired right), not corpus difficulty."""
    rng = np.random.default_rng(seed)
    t = np.arange(8000) / 16000
    for split, n in (("train", 96), ("dev", 32), ("eval", 32)):
        rows = ["path,label,utt,speaker,attack"]
        for i in range(n):
            f0 = rng.uniform(90, 260)
            tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 12) if k * f0 < 7600)
            wave = 0.2 * tone / np.abs(tone).max() + 0.003 * rng.standard_normal(t.size)
            spoof = i % 2 == 1
            if spoof:
                spec = np.fft.rfft(rng.standard_normal(t.size))
                freqs = np.fft.rfftfreq(t.size, 1 / 16000)
                spec[(freqs < 4000) | (freqs > 7000)] = 0
                band = np.fft.irfft(spec, t.size)
                wave = wave + 0.03 * band / band.std()
            name = f"{split}_{i:03d}.wav"
            sf.write(root / name, wave.astype(np.float32), 16000, subtype="PCM_16")
            rows.append(f"{name},{'spoof' if spoof else 'bonafide'},{split}_{i:03d},spk{i % 4},{'T01' if spoof else '-'}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_mlp(bn: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(12, 16)]
    if bn:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 2)]
    return nn.Sequential(*layers)


def toy_batch(seed: int = 0, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    x_aug = -0.7 * x + 0.5 * torch.randn(n, 12, generator=g)  # often conflicting gradients
    y = torch.randint(0, 2, (n,), generator=g)
    return x, x_aug, y


def demo_dict(corpus: Path, **optim) -> dict:
    """The demo config scaled down for tests: 0.5-s inputs, tiny RawNet2, few steps."""
    raw = yaml.safe_load(ROOT.joinpath("configs/demo.yaml").read_text())
    raw["data"]["train"] = [f"csv:{corpus}/train.csv"]
    raw["data"]["dev"] = [f"csv:{corpus}/dev.csv"]
    raw["data"]["eval"] = {"eval": [f"csv:{corpus}/eval.csv"]}
    raw["data"]["length"] = 8000
    raw["eval"].pop("length", None)  # the files are 0.5 s: score what the model trains on
    raw["data"]["num_workers"] = 0
    raw["device"] = "cpu"
    raw["optim"].update({"batch_size": 8, "epochs": 3, "patience": 10, **optim})
    raw["telemetry"]["flush_every"] = 5
    raw["checkpoint"] = {"average_best": 3, "select_by": "dev_loss"}  # the published selection
    return raw


def untrained_model_file(raw: dict, path: Path) -> nn.Module:
    """A seeded, untrained model of `raw`'s config saved as a dpda model file at `path`."""
    from dpda.models import build_model
    from dpda.train.checkpoint import save_checkpoint
    from dpda.train.config import config_from_dict
    from dpda.train.model_file import MODEL_FORMAT

    cfg = config_from_dict(raw)
    torch.manual_seed(0)
    model = build_model(cfg.model.name, cfg.model.preset, **cfg.model.overrides).eval()
    save_checkpoint({"format": MODEL_FORMAT, "model": model.state_dict(), "config": cfg.to_dict(), "dev_threshold": 0.0}, path)
    return model


def to_fairseq(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq wav2vec 2.0 names of a torchaudio Wav2Vec2Model state dict (the inverse of
    dpda.models.ssl_weights.convert_fairseq), plus two pretraining-only tensors it must drop."""
    rules = [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(.*)", r"feature_extractor.conv_layers.\1.0.\2"),
        (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(.*)", r"feature_extractor.conv_layers.\1.2.1.\2"),
        (r"encoder\.feature_projection\.projection\.(.*)", r"post_extract_proj.\1"),
        (r"encoder\.feature_projection\.layer_norm\.(.*)", r"layer_norm.\1"),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
        (r"encoder\.transformer\.layer_norm\.(.*)", r"encoder.layer_norm.\1"),
        (r"encoder\.transformer\.layers\.(\d+)\.attention\.(.*)", r"encoder.layers.\1.self_attn.\2"),
        (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.(.*)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
        (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(.*)", r"encoder.layers.\1.fc1.\2"),
        (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.(.*)", r"encoder.layers.\1.fc2.\2"),
        (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.(.*)", r"encoder.layers.\1.final_layer_norm.\2"),
    ]
    out = {}
    for k, v in state.items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, k):
                out[re.sub(pattern, repl, k)] = v
                break
        else:
            raise AssertionError(f"no fairseq name for {k}")
    out["mask_emb"] = torch.zeros(64)
    out["quantizer.vars"] = torch.zeros(1, 4, 8)
    return out


CHECK_LOG_ENV = "DPDA_TEST_CHECK_LOG"


def log_corpus_checks() -> None:
    """Ray `worker_process_setup_hook` (and a plain call in the test process): every corpus
    check that decodes files appends `pid spec` to the file named by $DPDA_TEST_CHECK_LOG, so a
    test counts the decodes of a whole search, across processes and nodes."""
    import os

    from dpda.data import check

    real = check.inspect_manifest
    if getattr(real, "logged", False):
        return

    def logged(manifest, *args, **kwargs):
        with open(os.environ[CHECK_LOG_ENV], "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {manifest.attrs.get('spec')}\n")
        return real(manifest, *args, **kwargs)

    logged.logged = True
    check.inspect_manifest = logged


def scored_manifest(bona: np.ndarray, spoof: np.ndarray):
    """(manifest, scores) of one set for `dpda.metrics.breakdown`: bona fide trials of attack
    `-`, spoofs alternating between attacks A1 and A2."""
    import pandas as pd

    n = len(bona) + len(spoof)
    manifest = pd.DataFrame({
        "utt": [f"u{i}" for i in range(n)], "target": [1] * len(bona) + [0] * len(spoof),
        "label": ["bonafide"] * len(bona) + ["spoof"] * len(spoof),
        "attack": ["-"] * len(bona) + ["A1", "A2"] * (len(spoof) // 2),
    })
    return manifest, pd.Series(np.concatenate([bona, spoof]), index=manifest["utt"])
