"""The rule registry is the one place a rule is named: a rule registered here (and nowhere else)
is accepted by the config, validated with its own options, and trains a step; the README's rule
table lists exactly the registered rules with their option defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import pytest
import torch
from pydantic import Field
from torch import nn

from dpda.align import RULES, Rule, make_aligner, register_rule
from dpda.errors import UserError
from dpda.train.config import config_from_dict
from dpda.train.step import DualPathStep
from dpda.typed import Settings
from support import tiny_mlp, toy_batch

ROOT = Path(__file__).resolve().parents[1]
LOSS = nn.CrossEntropyLoss()


class BlendOptions(Settings):
    w: Annotated[float, Field(ge=0, le=1)] = 1.0


@pytest.fixture
def blend_rule():
    """A toy rule: update = w g_orig + (1 - w) g_aug, registered for one test."""
    rule = register_rule(Rule(
        "blend", "toy: w g_orig + (1 - w) g_aug",
        lambda oo, aa, oa, options, state, finite: (torch.full_like(oo, options.w),
                                                    torch.full_like(oo, 1 - options.w), None),
        BlendOptions))
    yield rule
    del RULES["blend"]


def test_a_registered_rule_is_accepted_by_the_config_with_its_options(blend_rule):
    raw = {"model": {"name": "aasist", "preset": "tiny"}, "align": {"rule": "blend", "options": {"w": 0.25}}}
    cfg = config_from_dict(raw, source="c.yaml")
    assert (cfg.align.rule, cfg.align.options.model_dump()) == ("blend", {"w": 0.25})
    with pytest.raises(UserError, match=r"^c\.yaml: align\.options\.w: must be in \[0, 1\], got 2"):
        config_from_dict({**raw, "align": {"rule": "blend", "options": {"w": 2}}}, source="c.yaml")
    with pytest.raises(UserError, match=r"align\.options\.beta: unknown key \(allowed: w\)"):
        config_from_dict({**raw, "align": {"rule": "blend", "options": {"beta": 0.1}}}, source="c.yaml")
    del RULES["blend"]
    with pytest.raises(UserError, match=r"align\.rule: must be one of none, pcgrad, gradvac, cagrad, mgda"):
        config_from_dict(raw, source="c.yaml")
    RULES["blend"] = blend_rule


def test_a_registered_rule_trains_a_step(blend_rule):
    model = tiny_mlp()
    x, xa, y = toy_batch()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    g_orig = torch.autograd.grad(LOSS(model(x), y), params)
    opt = torch.optim.SGD(params, lr=1.0)
    step = DualPathStep(model, LOSS, opt, make_aligner("blend", w=1.0))
    stats = step(x, xa, y).to_host()
    assert not stats["skipped"]
    for p, b, g in zip(params, before, g_orig):  # w = 1: the update is the original path's gradient
        torch.testing.assert_close(p.detach(), b - g, rtol=1e-5, atol=1e-6)


def test_readme_rule_table_lists_every_registered_rule_and_its_options():
    text = (ROOT / "README.md").read_text()
    section = text.split("### Alignment rules")[1].split("Every rule also takes")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", section, re.M))
    assert list(rows) == list(RULES)
    for name, rule in RULES.items():
        defaults = rule.options().model_dump()
        for option, value in defaults.items():
            assert f"`{option}={value}`" in rows[name], (name, option)
        if not defaults:
            assert "no options" in rows[name]
