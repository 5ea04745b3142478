"""`inference_layout`: scoring with 2-D convolution weights in channels-last order changes the
speed, not the scores (beyond float32 rounding), and leaves every other tensor where it was."""

from __future__ import annotations

import pytest
import torch

from dpda.models.registry import build_model
from dpda.train.inference import inference_layout


@pytest.mark.parametrize("name, preset", [("aasist", "tiny"), ("aasist", "released_l"), ("rawnet2", "tiny"),
                                          ("lcnn", "tiny"), ("ssl_aasist", "tiny")])
def test_same_logits_and_only_2d_conv_weights_move(name: str, preset: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, preset, seed=3).eval()
    wave = torch.randn(3, 16_000)
    with torch.no_grad():
        before = model(wave)
    pointers = {n: p.data_ptr() for n, p in model.named_parameters()}
    shapes = {n: p.shape for n, p in model.named_parameters()}
    model = inference_layout(model)
    with torch.no_grad():
        after = model(wave)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()))
    for n, p in model.named_parameters():
        assert p.shape == shapes[n]  # a layout, not a reshape
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last), n
        else:
            assert p.data_ptr() == pointers[n], f"{n} was copied though it is not a 2-D convolution weight"
    assert not model.training
