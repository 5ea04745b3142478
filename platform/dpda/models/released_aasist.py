"""The released AASIST checkpoints (github clovaai/aasist `models/weights/AASIST.pth`,
`AASIST-L.pth`; asvspoof-challenge/asvspoof5 `Baseline-AASIST/models/weights/AASIST/best.pth`)
as dpda's `aasist` model (presets `released` and `released_l`).

A released `.pth` is the `state_dict()` of clovaai's `models/AASIST.py` `Model` (229 tensors).
`released_to_dpda` renames its keys by the table below and adds the two tensors dpda's model has
and the file lacks: the sinc band edges (`sinc.low_hz`, `sinc.band_hz`, 70 values each), which the
released `CONV` recomputes at every construction and never saves. They are derived as `CONV`
derives them (float64 NumPy, mel-spaced between the lowest and highest of 257 FFT bin
frequencies, then float32), so the filters equal the released ones to float32 rounding.

| released (clovaai models/AASIST.py)      | dpda (`aasist`)                                |
|------------------------------------------|------------------------------------------------|
| `first_bn`                               | `stem.1`                                       |
| `encoder.<i>.0.{bn1,conv1,bn2,conv2}`    | `encoder.<i>.{pre.0,conv1,bn2,conv2}`          |
| `encoder.<i>.0.conv_downsample`          | `encoder.<i>.downsample`                       |
| `pos_S`, `master1`, `master2`            | `backend.{pos_spectral,master1,master2}`       |
| `GAT_layer_S`, `GAT_layer_T`             | `backend.gat_{spectral,temporal}`              |
| `HtrgGAT_layer_ST<ab>`                   | `backend.hs_gal<ab>`                           |
|   `.att_projM`, `.att_weightM`           |   `.att_proj_master`, `.att_weight_master`     |
|   `.proj_with_attM`, `.proj_without_attM`|   `.proj_with_att_master`, `.proj_without_att_master` |
| `pool_S`, `pool_T`                       | `backend.pool_{spectral,temporal}`             |
| `pool_h{S,T}{1,2}`                       | `backend.pool_h{s,t}{1,2}`                     |
| `out_layer`                              | `backend.out`                                  |
| (not saved: `conv_time`'s fixed filters) | `sinc.low_hz`, `sinc.band_hz` (derived)        |

Every other name inside these modules (att_proj, att_weight11, proj_type1, bn, ...) is the same.
The published SSL-AASIST (`dpda.models.ssl_aasist`) shares the encoder and graph rows under other
prefixes (`encoder_and_graph_rules`). Scores: the released `main.py` writes `batch_out[:, 1]`,
the bona fide logit (`eval.score: logit1`), on the first 64,600 samples, tiled when shorter
(`data_utils.pad`, which dpda's `fix_length` equals).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import torch

from dpda.models.ssl_weights import convert_published

RELEASED_FILTERS = 70  # `filts[0]` of every released config (the 23 spectral nodes are 70 // 3)
RELEASED_SAMPLE_RATE = 16_000
RELEASED_NFFT = 512  # `CONV`'s grid: the band edges span its 257 bin frequencies
RELEASED_LENGTH = 64_600  # `nb_samp` of the released configs: the samples `main.py` scores
Rules = list[tuple[re.Pattern[str], str]]


def encoder_and_graph_rules(encoder: str, graph: str) -> Rules:
    """The released AASIST names of the residual encoder and the graph back end -> dpda's, under the
    dpda prefixes `encoder` and `graph` (each ending with a dot)."""
    return [(re.compile(p), r) for p, r in [
        (r"^encoder\.(\d+)\.0\.bn1\.(.+)$", encoder + r"\1.pre.0.\2"),
        (r"^encoder\.(\d+)\.0\.conv_downsample\.(.+)$", encoder + r"\1.downsample.\2"),
        (r"^encoder\.(\d+)\.0\.((?:conv1|bn2|conv2)\..+)$", encoder + r"\1.\2"),
        (r"^pos_S$", graph + "pos_spectral"),
        (r"^(master[12])$", graph + r"\1"),
        (r"^GAT_layer_S\.(.+)$", graph + r"gat_spectral.\1"),
        (r"^GAT_layer_T\.(.+)$", graph + r"gat_temporal.\1"),
        (r"^HtrgGAT_layer_ST(\d\d)\.(att_proj|att_weight|proj_with_att|proj_without_att)M(\..+)?$",
         graph + r"hs_gal\1.\2_master\3"),
        (r"^HtrgGAT_layer_ST(\d\d)\.(.+)$", graph + r"hs_gal\1.\2"),
        (r"^pool_S\.(.+)$", graph + r"pool_spectral.\1"),
        (r"^pool_T\.(.+)$", graph + r"pool_temporal.\1"),
        (r"^pool_hS([12])\.(.+)$", graph + r"pool_hs\1.\2"),
        (r"^pool_hT([12])\.(.+)$", graph + r"pool_ht\1.\2"),
        (r"^out_layer\.(.+)$", graph + r"out.\1"),
    ]]


_RULES: Rules = [(re.compile(r"^first_bn\.(.+)$"), r"stem.1.\1"), *encoder_and_graph_rules("encoder.", "backend.")]


def released_band_edges(n_filters: int = RELEASED_FILTERS, sample_rate: int = RELEASED_SAMPLE_RATE) -> np.ndarray:
    """The n_filters + 1 band edges in Hz (float64) of the released `CONV.__init__`."""
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + hz / 700)

    f = int(sample_rate / 2) * np.linspace(0, 1, int(RELEASED_NFFT / 2) + 1)
    mel = to_mel(f)
    return 700 * (10 ** (np.linspace(mel.min(), mel.max(), n_filters + 1) / 2595) - 1)


def released_sinc_state(n_filters: int = RELEASED_FILTERS) -> dict[str, torch.Tensor]:
    """dpda's fixed sinc buffers holding the released band edges."""
    edges = released_band_edges(n_filters)
    return {"sinc.low_hz": torch.tensor(edges[:-1], dtype=torch.float32),
            "sinc.band_hz": torch.tensor(edges[1:] - edges[:-1], dtype=torch.float32)}


def released_to_dpda(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dpda `aasist` state dict from a released AASIST one (table in the module docstring).

    Keys that fit no rule keep their released names, so a strict load names the first of them."""
    return convert_published(state, _RULES) | released_sinc_state()
