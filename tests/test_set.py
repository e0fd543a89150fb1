"""SET (sparse evolutionary training): exact counts, which weights are dropped (brute force),
where they regrow, optimiser state, enforcement through training, determinism, and `paizoo
evolve` end to end."""

from __future__ import annotations

import csv
from fractions import Fraction

import pytest
import torch
from _training_models import CNN, MLP
from torch import nn

import paizoo
from paizoo.masks import Mask
from paizoo.models import create_model
from paizoo.training import TrainConfig, train
from paizoo.training.set import SETSchedule


def _net(seed: int = 0) -> tuple[nn.Module, Mask]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 7))
    mask = paizoo.prune(model, "random", sparsity=0.6, seed=seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in mask:
                p.mul_(mask[name])
    return model, mask


def _brute_force_dropped(w: torch.Tensor, keep: torch.Tensor, r: int) -> set[int]:
    """The r kept flat indices of smallest |w|, ties by index, by Python sorting."""
    kept = [(abs(float(v)), i) for i, (v, k) in enumerate(zip(w.reshape(-1).tolist(),
                                                              keep.reshape(-1).tolist(),
                                                              strict=True)) if k]
    return {i for _, i in sorted(kept)[:r]}


@pytest.mark.parametrize("zeta", [0.3, 0.5, 0.29, 1.0])
@pytest.mark.parametrize("exclude_dropped", [False, True])
def test_update_counts_drop_and_regrow(zeta, exclude_dropped):
    model, mask = _net()
    params = dict(model.named_parameters())
    before = {n: params[n].detach().clone() for n in mask}
    # make ties: two kept weights of equal magnitude in the first layer
    w0 = params["0.weight"]
    idx = mask["0.weight"].reshape(-1).nonzero().reshape(-1)[:2]
    with torch.no_grad():
        w0.view(-1)[idx[0]] = 1e-4
        w0.view(-1)[idx[1]] = -1e-4
    before["0.weight"] = w0.detach().clone()
    schedule = SETSchedule(delta_t=1, zeta=zeta, seed=3, exclude_dropped=exclude_dropped)
    new = schedule.update(model, mask, step=7)
    upd = schedule.history[-1]
    assert upd.step == 7 and upd.mask == new
    for name, keep in mask.items():
        k, n = int(keep.sum()), keep.numel()
        r = int(Fraction(str(zeta)) * k)  # exact floor
        if exclude_dropped:
            r = min(r, n - k)
        assert int(new[name].sum()) == k  # exact per-layer count
        dropped_flat = set(upd.dropped[name].reshape(-1).nonzero().reshape(-1).tolist())
        assert dropped_flat == _brute_force_dropped(before[name], keep, r)
        grown = upd.grown[name]
        assert int(grown.sum()) == r
        after_drop = keep & ~upd.dropped[name]
        assert not (grown & after_drop).any()  # regrown positions were not kept (after drop)
        if exclude_dropped:
            assert not (grown & keep).any()  # ... nor before the update
        assert torch.equal(new[name], after_drop | grown)
        w = params[name].detach()
        assert torch.count_nonzero(w[grown]) == 0  # regrown weights start at 0
        assert torch.count_nonzero(w[upd.dropped[name]]) == 0
        # untouched kept weights keep their values
        assert torch.equal(w[after_drop], before[name][after_drop])
    assert new != mask or zeta == 0


def test_regrowth_is_uniform_over_candidates():
    """Chi-square-free check: over many updates every candidate position gets regrown, and the
    empirical frequencies are within 5 standard deviations of r / (#candidates)."""
    w = torch.arange(1, 21, dtype=torch.float32)  # distinct magnitudes
    keep = torch.zeros(20, dtype=torch.bool)
    keep[:8] = True
    model = nn.Linear(20, 1, bias=False)
    schedule = SETSchedule(delta_t=1, zeta=0.25, seed=0, keep_history=False,
                           exclude_dropped=True)
    counts = torch.zeros(20)
    trials = 2000
    for _ in range(trials):
        with torch.no_grad():
            model.weight.copy_(w.reshape(1, 20))
        new = schedule.update(model, {"weight": keep.reshape(1, 20)})
        counts += (new["weight"].reshape(-1) & ~keep).float()
    assert counts[:8].sum() == 0
    p = 2 / 12  # r = 2 regrown among 12 candidates
    sd = (trials * p * (1 - p)) ** 0.5
    assert torch.all((counts[8:] - trials * p).abs() < 5 * sd)


def test_optimizer_state_reset_at_changed_positions():
    model, mask = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 12)).sum().backward()
    opt.step()
    bufs = {n: opt.state[p]["momentum_buffer"] for n, p in model.named_parameters()}
    old = {n: b.clone() for n, b in bufs.items()}
    schedule = SETSchedule(delta_t=1, zeta=0.5, seed=0)
    schedule.update(model, mask, opt)
    upd = schedule.history[-1]
    for name in mask:
        changed = upd.dropped[name] | upd.grown[name]
        assert changed.any()
        assert torch.count_nonzero(bufs[name][changed]) == 0
        assert torch.equal(bufs[name][~changed], old[name][~changed])
    assert torch.equal(bufs["0.bias"], old["0.bias"])


def test_seeded_determinism():
    runs = []
    for seed in (5, 5, 6):
        model, mask = _net()
        s = SETSchedule(delta_t=1, zeta=0.3, seed=seed)
        m = mask
        for _ in range(3):
            m = s.update(model, m)
        runs.append(m)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_bad_arguments():
    with pytest.raises(ValueError, match="delta_t"):
        SETSchedule(delta_t=0, zeta=0.3)
    with pytest.raises(ValueError, match="zeta"):
        SETSchedule(delta_t=10, zeta=1.5)
    model, mask = _net()
    with pytest.raises(KeyError, match="no parameter"):
        SETSchedule(1, 0.3).update(model, {"nope.weight": mask["0.weight"]})


@pytest.mark.parametrize("mode", ["project", "hook"])
def test_train_with_set_keeps_pruned_weights_zero(digits, mode, tmp_path):
    train_set, test_set = digits
    model = create_model(CNN, num_classes=10, in_channels=1, seed=0)
    mask = paizoo.prune(model, "random", sparsity=0.8, seed=0, apply=True)
    seen: list[int] = []
    schedule = SETSchedule(delta_t=7, zeta=0.3, seed=1, checkpoint_dir=tmp_path,
                           on_update=lambda u: seen.append(u.step))
    config = TrainConfig(epochs=1, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-3,
                         schedule="constant")
    result = train(model, train_set, test_set, config, mask_mode=mode, progress=False,
                   topology_update=schedule)
    steps = -(-len(train_set) // 64)
    expected = list(range(7, steps + 1, 7))
    assert seen == expected and result.extra["topology_updates"] == len(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"mask-step{s}.safetensors" for s in expected)
    final = schedule.history[-1].mask
    assert Mask.load(tmp_path / f"mask-step{expected[-1]}.safetensors") == final
    assert final != mask  # the topology changed
    assert [layer.kept for layer in final.layers()] == [layer.kept for layer in mask.layers()]
    # independent check from the module tensors: final mask carried, pruned weights exactly 0
    assert Mask.from_model(model) == final
    modules = dict(model.named_modules())
    for name, keep in final.items():
        module = modules[name.rpartition(".")[0]]
        assert torch.count_nonzero(module.weight_orig[~keep]) == 0
    assert result.mask_check is not None and result.mask_check.nonzero_pruned == 0
    # weights regrown (at 0) by the first update and still kept at the end did train
    first = schedule.history[0]
    trained = 0
    for name, keep in final.items():
        still = first.grown[name] & keep & ~first.dropped[name]
        trained += int(torch.count_nonzero(modules[name.rpartition(".")[0]].weight_orig[still]))
    assert trained > 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_hook_and_project_modes_give_identical_set_training(digits, optimizer):
    """Project mode lets momentum/Adam moments accumulate at pruned positions; SET's state reset
    at regrown positions must make it follow hook mode (where they stay 0) exactly."""
    train_set, test_set = digits
    config = TrainConfig(epochs=2, batch_size=64, optimizer=optimizer,
                         lr=0.1 if optimizer == "sgd" else 1e-2, momentum=0.9,
                         weight_decay=5e-3, schedule="constant")
    weights, masks = [], []
    for mode in ("project", "hook"):
        model = create_model(MLP, num_classes=10, in_channels=1, input_size=8, seed=0)
        paizoo.prune(model, "random", sparsity=0.8, seed=0, apply=True)
        schedule = SETSchedule(delta_t=5, zeta=0.3, seed=2)
        train(model, train_set, test_set, config, mask_mode=mode, progress=False,
              topology_update=schedule)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
        masks.append([u.mask for u in schedule.history])
    assert len(masks[0]) > 3 and masks[0] == masks[1]
    for n in weights[0]:
        assert torch.equal(weights[0][n], weights[1][n]), n


def test_dense_model_with_topology_update_is_an_error(digits):
    train_set, test_set = digits
    model = create_model(MLP, num_classes=10, in_channels=1, input_size=8, seed=0)
    with pytest.raises(ValueError, match="masked model"):
        train(model, train_set, test_set, TrainConfig(epochs=1), progress=False,
              topology_update=SETSchedule(5, 0.3))


def test_evolve_cli_end_to_end(tmp_path):
    pytest.importorskip("paizoo.metrics")
    from paizoo.cli import main

    out = tmp_path / "evo"
    rc = main(["evolve", "--model", MLP, "--dataset", "digits", "--pruner", "random",
               "--sparsity", "0.8", "--epochs", "1", "--batch-size", "64", "--delta-t", "10",
               "--zeta", "0.3", "--seeds", "0,1", "--out", str(out), "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "nnstd.csv")))
    assert {r["seed"] for r in rows} == {"0", "1"}
    first = [r for r in rows if r["step"] == "0"]
    assert all(float(r["nnstd_vs_initial"]) == 0.0 for r in first)
    later = [r for r in rows if r["step"] != "0"]
    assert later and all(float(r["nnstd_vs_initial"]) > 0 for r in later)
    assert all(0 <= float(r["nnstd_vs_other_seed"]) <= 1 for r in rows)
    assert (out / "nnstd.png").stat().st_size > 0
