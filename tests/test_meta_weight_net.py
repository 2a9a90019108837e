"""Meta-Weight-Net: the meta-gradient against finite differences, and the real step."""

from __future__ import annotations

import copy

import torch
from torch import nn

from absgd.meta_weight_net import MetaWeightNet, WeightNet


def _setup(seed=0):
    """A float64 model and data (finite differences need the precision)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    loss = nn.CrossEntropyLoss(reduction="none")
    mwn = MetaWeightNet(
        model, loss, opt, hidden=4, meta_lr=0.1, meta_momentum=0.0, meta_weight_decay=0.0
    )
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 3, (6,))
    xm, ym = torch.randn(4, 3, dtype=torch.float64), torch.randint(0, 3, (4,))
    return model, mwn, x, y, xm, ym


def _meta_loss(model, weight_net, x, y, xm, ym, lr=0.3) -> torch.Tensor:
    """L_meta(θ - lr ∇θ mean(V(l) l)) computed by hand with a copied model (no functional_call)."""
    m = copy.deepcopy(model)
    losses = nn.functional.cross_entropy(m(x), y, reduction="none")
    v = weight_net(losses.detach())
    obj = (v / v.sum() * losses).sum()
    grads = torch.autograd.grad(obj, list(m.parameters()))
    with torch.no_grad():
        for p, g in zip(m.parameters(), grads, strict=True):
            p -= lr * g
    return nn.functional.cross_entropy(m(xm), ym)


def test_meta_gradient_matches_finite_differences():
    model, mwn, x, y, xm, ym = _setup()
    before = copy.deepcopy(mwn.weight_net)
    model = copy.deepcopy(model)  # the classifier at the time of the meta step
    mwn.step(x, y, xm, ym)
    # with plain SGD (lr 0.1, no momentum): Θ_new = Θ - 0.1 ∇Θ L_meta  =>  ∇ = (Θ - Θ_new)/0.1
    got = [
        (b - a) / 0.1 for b, a in zip(before.parameters(), mwn.weight_net.parameters(), strict=True)
    ]
    eps = 1e-6
    for p, g in zip(before.parameters(), got, strict=True):
        for idx in [tuple(torch.randint(0, s, (1,)).item() for s in p.shape) for _ in range(3)]:
            with torch.no_grad():
                p[idx] += eps
            up = _meta_loss(model, before, x, y, xm, ym)
            with torch.no_grad():
                p[idx] -= 2 * eps
            down = _meta_loss(model, before, x, y, xm, ym)
            with torch.no_grad():
                p[idx] += eps
            fd = (up - down) / (2 * eps)
            assert torch.isclose(g[idx], fd, rtol=1e-4, atol=1e-8), (g[idx], fd)


def test_real_step_uses_normalised_weights_of_the_updated_weight_net():
    model, mwn, x, y, xm, ym = _setup(1)
    start = copy.deepcopy(model)
    mwn.step(x, y, xm, ym)
    w = mwn.last_weights
    assert torch.isclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    ref = copy.deepcopy(start)
    losses = nn.functional.cross_entropy(ref(x), y, reduction="none")
    with torch.no_grad():
        expected_w = mwn.weight_net(losses.detach())
        expected_w = expected_w / expected_w.sum()
    torch.testing.assert_close(w, expected_w)
    (expected_w * losses).sum().backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.3 * p.grad
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_weight_net_outputs_are_in_the_unit_interval_and_state_round_trips():
    net = WeightNet(8)
    out = net(torch.linspace(0.0, 20.0, 11))
    assert out.shape == (11,) and bool(((out > 0) & (out < 1)).all())
    _, mwn, x, y, xm, ym = _setup(2)
    mwn.step(x, y, xm, ym)
    other = _setup(3)[1]
    other.load_state_dict(mwn.state_dict())
    for a, b in zip(mwn.weight_net.parameters(), other.weight_net.parameters(), strict=True):
        assert torch.equal(a, b)
