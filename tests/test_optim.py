"""The trainer's optimizers: torch's fused CPU kernels, the same update as its per-tensor loop."""
import copy

import pytest
import torch
from torch import nn

from visiontk.engine.optim import build_optimizer, load_optimizer_state, param_groups
from visiontk.recipe.schema import TrainConfig


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 2))


def _train(model, optimizer, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=g), torch.randn(16, 2, generator=g)
        loss = (model(x) - y).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("name, reference", [
    ("sgd", lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, foreach=False)),
    ("adamw", lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr, foreach=False)),
    ("adam", lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr, foreach=False)),
])
def test_fused_kernel_on_the_cpu_makes_the_per_tensor_loops_update(name, reference, one_thread):
    cfg = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.01)
    ours_model, ref_model = _model(), _model()
    ours = build_optimizer(cfg, param_groups(ours_model, cfg.weight_decay, cfg.lr))
    assert all(g["fused"] for g in ours.param_groups)
    ref = reference(param_groups(ref_model, cfg.weight_decay, cfg.lr), cfg)
    _train(ours_model, ours, 20)
    _train(ref_model, ref, 20)
    moved = (_params(ours_model) - _params(_model())).abs().max()
    assert moved > 1e-3  # the weights did move
    # The same update; only the last bits of rounding may differ.
    torch.testing.assert_close(_params(ours_model), _params(ref_model), rtol=1e-5, atol=1e-6)


def test_a_resumed_optimizer_keeps_this_machines_kernel_and_its_state(one_thread):
    """A last.pt written by torch's per-tensor loop (an older visiontk, another device)
    resumes with the fused kernel, and goes on as the loop it came from would."""
    cfg = TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.01)
    model = _model()
    loop = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.lr), lr=cfg.lr, foreach=False)
    _train(model, loop, 5)
    saved_weights, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(loop.state_dict())  # last.pt
    _train(model, loop, 5, seed=2)  # the uninterrupted run

    resumed = _model()
    resumed.load_state_dict(saved_weights)
    ours = build_optimizer(cfg, param_groups(resumed, cfg.weight_decay, cfg.lr))
    load_optimizer_state(ours, saved_state)
    assert all(g["fused"] for g in ours.param_groups)
    _train(resumed, ours, 5, seed=2)
    torch.testing.assert_close(_params(resumed), _params(model), rtol=1e-5, atol=1e-6)
