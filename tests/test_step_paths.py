"""The step with K augmented paths: K = 1 is the two-path step bit for bit; K > 1 runs in every
mode, its update is the rule's combination of the path gradients, its statistics come from the
Gram matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dpda_analysis import schema as S

from dpda.align import make_aligner
from dpda.align.path_gram import path_gram
from dpda.errors import UserError
from dpda.train.step import DualPathStep
from multipath_support import CASES, case_key, digest, k1_run
from step_support import LOSS, ConvNet, conv_batch

REFERENCE = Path(__file__).parent / "fixtures" / "multipath" / "k1_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("case", CASES, ids=[case_key(*c) for c in CASES])
def test_one_augmented_path_equals_the_two_path_step_bit_for_bit(case, reference) -> None:
    """Parameters (and BatchNorm buffers, the last step's cos and update norm) after 3 Adam steps
    have the bytes the two-path step gave before it took K paths (their digests:
    tests/fixtures/multipath/make_k1_reference.py), for every rule, mode, granularity, with and
    without clipping; also with the augmented batch given as a list."""
    want = reference[case_key(*case)]
    got = {k: digest(v) for k, v in k1_run(*case).items()}
    assert got == want
    as_list = {k: digest(v) for k, v in k1_run(*case, step_cls=_ListInput).items()}
    assert as_list == want


class _ListInput(DualPathStep):
    def __call__(self, x_orig, x_aug, y):
        return super().__call__(x_orig, [x_aug], y)


def _paths_batch(seed: int, k: int, n: int = 6, t: int = 400):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, generator=g)
    augs = [(-0.6 if p % 2 else 0.8) * x + 0.5 * torch.randn(n, t, generator=g) for p in range(k)]
    return x, augs, torch.tensor([0, 1] * (n // 2))


def _flat_grads(model, loss, retain: bool = False) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


@pytest.mark.parametrize("mode", ["separate", "joint", "batched"])
def test_three_augmented_paths_give_the_mean_update_and_gram_statistics(mode: str) -> None:
    """K = 3 with rule none: the update is the mean of the four path gradients (per-path
    BatchNorm statistics in separate / batched, shared in joint), and the statistics are the
    pairwise cosines and losses of those gradients."""
    k = 3
    model, ref = ConvNet(seed=1), ConvNet(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = DualPathStep(model, LOSS, opt, make_aligner("none"), mode=mode, augmented_paths=k)
    x, augs, y = _paths_batch(0, k)
    xs = [x, *augs]
    if mode == "joint":
        logits = ref(torch.cat(xs))
        losses = [LOSS(logits[p * 6 : (p + 1) * 6], y) for p in range(k + 1)]
        grads = [_flat_grads(ref, loss, retain=True) for loss in losses]
    else:
        losses, grads = [], []
        for xp in xs:
            loss = LOSS(ref(xp), y)
            losses.append(loss.detach())
            grads.append(_flat_grads(ref, loss))
    stats = step(x, augs, y)
    before = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(after, before - 0.1 * torch.stack(grads).mean(0), rtol=1e-5, atol=1e-6)
    g = torch.stack(grads).double()
    gram = g @ g.T
    pairs = S.path_pairs(k + 1)
    cos = [gram[i, j] / (gram[i, i] * gram[j, j]).sqrt() for i, j in pairs]
    host = stats.to_host()
    assert host["path_loss"] == pytest.approx([float(v.detach()) for v in losses], rel=1e-5)
    assert host["path_cos"] == pytest.approx([float(c) for c in cos], rel=1e-4, abs=1e-6)
    mean_aug = g[1:].mean(0)
    assert host["norm_aug"] == pytest.approx(float(mean_aug.norm()), rel=1e-5)
    assert host["cos"] == pytest.approx(float(g[0] @ mean_aug / (g[0].norm() * mean_aug.norm())), rel=1e-4, abs=1e-6)
    assert host["loss_aug"] == pytest.approx(float(torch.stack(losses[1:]).detach().mean()), rel=1e-5)
    assert len(host["layer_path_cos"]) == len(step.layer_names)
    assert all(len(row) == len(pairs) for row in host["layer_path_cos"])
    assert not host["skipped"]
    assert step.grad_buffers().shape[0] == k + 1
    assert step.persistent_numel >= k * step.segments.numel


def test_three_paths_in_batched_mode_leave_running_statistics_as_sequential_passes() -> None:
    k = 3
    sep, bat = ConvNet(seed=2), ConvNet(seed=2)
    x, augs, y = _paths_batch(1, k)
    for model, mode in ((sep, "separate"), (bat, "batched")):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        DualPathStep(model, LOSS, opt, make_aligner("none"), mode=mode, augmented_paths=k)(x, augs, y)
    for (name, a), (_, b) in zip(sep.state_dict().items(), bat.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_layer_gram_of_the_step_buffer_is_per_tensor() -> None:
    model = ConvNet(seed=4)
    step = DualPathStep(model, LOSS, torch.optim.SGD(model.parameters(), lr=0.0), make_aligner("none"),
                        augmented_paths=2)
    x, augs, y = _paths_batch(2, 2)
    step(x, augs, y)
    gram = path_gram(step.grad_buffers(), step.segments)
    assert gram.shape == (len(step.layer_names), 3, 3)
    torch.testing.assert_close(gram.sum(0)[0, 0], step.grad_buffers()[0].double().square().sum(), rtol=1e-6, atol=0)


def test_paths_are_checked_when_the_step_is_built() -> None:
    model = ConvNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UserError, match="augment.paths"):
        DualPathStep(model, LOSS, opt, make_aligner("none"), augmented_paths=0)
    step = DualPathStep(model, LOSS, opt, make_aligner("none"), augmented_paths=2)
    x, augs, y = _paths_batch(0, 2)
    with pytest.raises(UserError, match="2 augmented paths"):
        step(x, augs[:1], y)


@pytest.mark.parametrize("sizes", [(5,), (300, 7, 1000, 256, 3), (256, 512), (70000, 33, 5)])
@pytest.mark.parametrize("n_paths", [2, 3, 5])
def test_path_gram_and_the_fused_update_equal_per_tensor_matrix_products(sizes, n_paths: int) -> None:
    """Per segment G = B B^T and update = c B, whatever the segments' sizes (blocks cut by a
    boundary, a partial last block, tensors larger than a chunk); only the target row changes."""
    from dpda.align.path_gram import combine_paths_
    from dpda.align.segments import Segments

    torch.manual_seed(len(sizes) * 10 + n_paths)
    segments = Segments(sizes)
    buf = torch.randn(n_paths, segments.numel, dtype=torch.float64)
    parts = torch.split(buf, list(sizes), dim=1)
    torch.testing.assert_close(path_gram(buf, segments), torch.stack([b @ b.T for b in parts]))
    for coeffs in (torch.randn(len(sizes), n_paths, dtype=torch.float64), torch.randn(1, n_paths, dtype=torch.float64)):
        out = buf.clone()
        combine_paths_(out, coeffs, segments, n_paths - 1)
        rows = coeffs.expand(len(sizes), -1)
        torch.testing.assert_close(out[-1], torch.cat([rows[i] @ parts[i] for i in range(len(sizes))]))
        assert torch.equal(out[:-1], buf[:-1])


def test_two_paths_report_their_path_statistics_as_the_pairwise_ones() -> None:
    model = ConvNet(seed=5)
    step = DualPathStep(model, LOSS, torch.optim.SGD(model.parameters(), lr=0.1), make_aligner("pcgrad"))
    host = step(*conv_batch(7)).to_host()
    assert host["path_loss"] == [host["loss_orig"], host["loss_aug"]]
    assert host["path_cos"] == [host["cos"]]
    assert host["layer_path_cos"] == [[c] for c in host["layer_cos"]]


class _Tensors(torch.nn.Module):
    """`count` parameter tensors holding 5000 numbers between them, every one with a gradient."""

    def __init__(self, count: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(count)
        sizes = [5000 // count + (i < 5000 % count) for i in range(count)]
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(n, generator=g) * 0.1) for n in sizes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.stack([torch.tanh(w).mean() for w in self.weights])
        return x[:, :2] * s.sum() + x[:, 2:4] * (s * s).sum()


@pytest.mark.parametrize("granularity", ["model", "layer"])
def test_three_paths_make_one_host_sync_and_operators_independent_of_the_tensor_count(granularity: str) -> None:
    """The K-path alignment keeps the step's machinery properties (tests/test_step_overhead.py):
    one host sync per step, an operator count that does not grow with the parameter tensors."""
    from dpda.train.op_count import profile_ops

    x, augs, y = _paths_batch(3, 3)
    counts = {}
    for count in (3, 17, 60):
        model = _Tensors(count)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        step = DualPathStep(model, LOSS, opt, make_aligner("none", granularity=granularity), augmented_paths=3,
                            clip_norm=1.0)
        step(x, augs, y)
        counts[count] = profile_ops(step, x, augs, y)
    assert all(c.syncs["step"] == 1 and c.syncs["passes"] == 0 for c in counts.values())
    assert len({(c.ops["step"], c.views["step"]) for c in counts.values()}) == 1


@pytest.mark.parametrize("rule", ["mgda", "cagrad"])
def test_three_paths_apply_the_rule_and_its_strength_once(rule: str) -> None:
    """K = 3 with a deterministic rule and strength 0.5 (separate mode, whole model): the update is
    the rule's P-path coefficients (`multipath.path_coeffs` on the reference gradients' Gram
    matrix, strength applied there once) times the path gradients."""
    from dpda.align import multipath

    k, strength = 3, 0.5
    model, ref = ConvNet(seed=2), ConvNet(seed=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    aligner = make_aligner(rule, strength=strength)
    step = DualPathStep(model, LOSS, opt, aligner, mode="separate", augmented_paths=k)
    x, augs, y = _paths_batch(3, k)
    grads = torch.stack([_flat_grads(ref, LOSS(ref(xp), y)) for xp in [x, *augs]]).double()
    coeffs = multipath.path_coeffs(rule, (grads @ grads.T)[None], options=aligner._options, state={},
                                   strength=strength)[0]
    step(x, augs, y)
    before = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    expected = before - 0.1 * (coeffs[:, None] * grads).sum(0).float()
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-6)
    mean = before - 0.1 * grads.mean(0).float()
    assert (after - mean).abs().max() > 1e-4  # the rule changed the update (not the plain mean)


def test_three_paths_draw_the_rules_task_orders_from_the_seed_and_resume_them() -> None:
    """PCGrad at K = 3 projects in LibMTL's random task order: drawn from a generator seeded with
    torch's seed, its state kept in path_state, so a step rebuilt from that state (a resume) draws
    the next orders an uninterrupted run draws."""
    from dpda.align import multipath

    k = 3
    torch.manual_seed(11)
    model, ref = ConvNet(seed=4), ConvNet(seed=4)
    aligner = make_aligner("pcgrad")
    step = DualPathStep(model, LOSS, torch.optim.SGD(model.parameters(), lr=0.1), aligner, mode="separate",
                        augmented_paths=k)
    x, augs, y = _paths_batch(5, k)
    grads = torch.stack([_flat_grads(ref, LOSS(ref(xp), y)) for xp in [x, *augs]]).double()
    orders = torch.Generator().manual_seed(torch.initial_seed())
    coeffs = multipath.path_coeffs("pcgrad", (grads @ grads.T)[None], options=aligner._options, state={},
                                   generator=orders)[0]
    before = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
    step(x, augs, y)
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(after, before - 0.1 * (coeffs[:, None] * grads).sum(0).float(), rtol=1e-5, atol=1e-6)
    # the next step's orders: an uninterrupted step and one rebuilt from path_state agree
    resumed = DualPathStep(ConvNet(seed=4), LOSS, torch.optim.SGD(model.parameters(), lr=0.1), make_aligner("pcgrad"),
                           mode="separate", augmented_paths=k)
    resumed.path_state.update(step.path_state)
    torch.manual_seed(999)  # a resumed process's own seed must not matter
    assert torch.equal(resumed._order_generator(torch.device("cpu")).get_state(), orders.get_state())
