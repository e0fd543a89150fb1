"""Masked training: the mask stays enforced, determinism, schedules, logs, configuration."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _training_models import CNN, MLP
from torch import nn

import paizoo
from paizoo.models import create_model
from paizoo.training import (
    Batches,
    ConfigError,
    MaskEnforcer,
    MaskViolationError,
    PruneDataConfig,
    TrainConfig,
    check_mask_enforced,
    train,
)


def _pruned(name: str = MLP, sparsity: float = 0.8, seed: int = 0) -> tuple[nn.Module, object]:
    extra = {"input_size": 8} if name == MLP else {}
    model = create_model(name, num_classes=10, in_channels=1, seed=seed, **extra)
    mask = paizoo.prune(model, "magnitude", sparsity=sparsity, apply=True)
    return model, mask


FAST = TrainConfig(epochs=2, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-3,
                   schedule="constant")


@pytest.mark.parametrize("mode", ["project", "hook"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pruned_weights_exactly_zero_after_training(digits, mode, optimizer):
    train_set, test_set = digits
    model, mask = _pruned(CNN)
    lr = 0.1 if optimizer == "sgd" else 1e-2
    result = train(model, train_set, test_set, FAST.replace(optimizer=optimizer, lr=lr),
                   mask_mode=mode, progress=False)
    # independent check straight from the modules' tensors
    modules = dict(model.named_modules())
    changed = 0
    for name, keep in mask.items():
        module = modules[name.rpartition(".")[0]]
        assert torch.equal(module.weight_mask.bool(), keep)
        assert torch.count_nonzero(module.weight_orig[~keep]) == 0
        assert torch.count_nonzero(module.weight[~keep]) == 0
        with torch.no_grad():
            assert torch.count_nonzero(model(test_set.x[:4]) * 0) == 0  # forward still works
        changed += int((module.weight_orig[keep] != 0).sum())
    assert changed > 0.99 * mask.num_kept  # the kept weights did train
    assert result.mask_check is not None
    assert result.mask_check.nonzero_pruned == 0
    assert result.mask_check.pruned == mask.num_total - mask.num_kept


def test_without_enforcement_pruned_weights_move(digits):
    """The check above can fail: plain training of zeroed weights makes them nonzero."""
    train_set, test_set = digits
    model, mask = _pruned()
    paizoo.remove_masks(model)  # weights zero at pruned positions but nothing enforces it
    train(model, train_set, test_set, FAST.replace(epochs=1), progress=False)
    moved = sum(int(torch.count_nonzero(p[~mask[n]]))
                for n, p in model.named_parameters() if n in mask)
    assert moved > 0


def test_check_mask_enforced_detects_violations():
    model, mask = _pruned()
    with pytest.raises(MaskViolationError, match="not exactly 0"):
        check_mask_enforced(model, mask)  # freshly applied: weight_orig keeps its pruned init
    check = MaskEnforcer(model, "hook").finish()  # zeroes weight_orig at pruned positions
    assert check is not None and check == check_mask_enforced(model, mask)
    assert check.nonzero_pruned == 0 and check.kept == mask.num_kept
    first = next(iter(mask))
    module = dict(model.named_modules())[first.rpartition(".")[0]]
    pos = (~mask[first]).nonzero()[0]
    with torch.no_grad():
        module.weight_orig[tuple(pos)] = 1.0
    with pytest.raises(MaskViolationError, match="not exactly 0"):
        check_mask_enforced(model, mask)
    with torch.no_grad():
        module.weight_orig[tuple(pos)] = 0.0
        module.weight_mask[tuple(pos)] = 1.0
    with pytest.raises(MaskViolationError, match="mask buffer differs"):
        check_mask_enforced(model, mask)


def test_enforcer_detects_a_weight_that_escaped_the_mask():
    model, _ = _pruned()
    enforcer = MaskEnforcer(model, "project")
    name = next(iter(enforcer.mask))
    param = dict(model.named_parameters())[name]
    with torch.no_grad():
        param[~enforcer.mask[name]] = 0.5  # as if a step had not been projected
    with pytest.raises(MaskViolationError, match="pruned weight"):
        enforcer.finish()


def test_should_stop_ends_training_after_the_step_it_says_so(digits, tmp_path):
    from paizoo.training import TrainingStopped

    train_set, test_set = digits
    model, _ = _pruned()
    forwards = []
    model.register_forward_hook(lambda m, i, o: forwards.append(m.training))
    asked = []

    def should_stop() -> bool:  # asked before epoch 1, then after every step: stop after 3
        asked.append(1)
        return len(asked) == 4

    log = tmp_path / "log.jsonl"
    with pytest.raises(TrainingStopped, match=r"stopped by the caller at step 3 \(epoch 1 of 2\)"):
        train(model, train_set, test_set, FAST, progress=False, should_stop=should_stop,
              log_path=str(log))
    assert forwards == [True, True, True]  # three training steps, no evaluation
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["start", "stopped"]


def test_hook_and_project_modes_give_identical_training(digits):
    train_set, test_set = digits
    histories, weights = [], []
    for mode in ("project", "hook"):
        model, _ = _pruned(MLP)
        result = train(model, train_set, test_set, FAST, mask_mode=mode, progress=False)
        histories.append([(m.train_loss, m.test_acc) for m in result.history])
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert histories[0] == histories[1]
    for n in weights[0]:
        assert torch.equal(weights[0][n], weights[1][n]), n


def _tied_mlp() -> nn.Module:
    torch.manual_seed(0)
    a, b = nn.Linear(64, 64, bias=False), nn.Linear(64, 64, bias=False)
    b.weight = a.weight  # one tensor used twice: one mask entry, masked in both modules
    return nn.Sequential(nn.Flatten(), a, nn.ReLU(), b, nn.ReLU(), nn.Linear(64, 10))


def test_tied_weights_train_masked_in_both_modes_alike(digits):
    train_set, test_set = digits
    histories, weights = [], []
    for mode in ("project", "hook"):
        model = _tied_mlp()
        mask = paizoo.prune(model, "magnitude", sparsity=0.8, apply=True)
        assert list(mask) == ["1.weight", "5.weight"]
        result = train(model, train_set, test_set, FAST, mask_mode=mode, progress=False)
        assert result.mask_check is not None and result.mask_check.nonzero_pruned == 0
        assert model[1].weight_orig is model[3].weight_orig  # still one tensor
        keep = mask["1.weight"]
        for module in (model[1], model[3]):  # every use computes with the masked tensor
            assert torch.equal(module.weight_mask.bool(), keep)
            assert torch.count_nonzero(module.weight[~keep]) == 0
        histories.append([(m.train_loss, m.test_acc) for m in result.history])
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert histories[0] == histories[1]
    for n in weights[0]:
        assert torch.equal(weights[0][n], weights[1][n]), n


class _TiedLM(nn.Module):
    """Embedding -> Linear -> head, the head tied to the embedding (an LM head)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(12, 6)
        self.mid = nn.Linear(6, 6)
        self.head = nn.Linear(6, 12, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mid(self.embed(tokens))))


def test_check_mask_enforced_checks_every_module_using_a_tied_tensor():
    import torch.nn.utils.prune as torch_prune

    model = _TiedLM()
    mask = paizoo.prune(model, "magnitude", sparsity=0.5, cover="embedding", apply=True)
    assert list(mask) == ["embed.weight", "mid.weight"]
    MaskEnforcer(model, "hook").finish()  # weight_orig zeroed at pruned positions: all clean
    assert check_mask_enforced(model, mask).nonzero_pruned == 0

    # the second user's effective weight is stale (nonzero at a pruned position)
    pos = tuple((~mask["embed.weight"]).nonzero()[0])
    with torch.no_grad():
        model.head.weight[pos] = 1.0
    with pytest.raises(MaskViolationError, match=r"head\.weight.*1 pruned weight value"):
        check_mask_enforced(model, mask)
    model(torch.tensor([[1, 2]]))  # the hooks recompute it: clean again
    check_mask_enforced(model, mask)

    # the second user carries another mask
    with torch.no_grad():
        model.head.weight_mask[pos] = 1.0
    with pytest.raises(MaskViolationError, match=r"head\.weight: the mask buffer differs"):
        check_mask_enforced(model, mask)

    # the second user is not masked at all: it computes with the shared tensor unmasked
    plain = _TiedLM()
    keep = mask["embed.weight"]
    torch_prune.custom_from_mask(plain.embed, "weight", keep)  # the embedding only
    torch_prune.custom_from_mask(plain.mid, "weight", mask["mid.weight"])
    with torch.no_grad():
        plain.embed.weight_orig.mul_(keep)
        plain.mid.weight_orig.mul_(mask["mid.weight"])
    assert plain.head.weight is plain.embed.weight_orig
    with pytest.raises(MaskViolationError,
                       match=r"embed\.weight: head\.weight uses the same tensor without the mask"):
        check_mask_enforced(plain, mask)


def test_replacing_the_mask_of_a_tied_tensor_masks_every_use():
    from paizoo.training.loop import _replace_mask  # what topology updates (SET) call

    model = _tied_mlp()
    mask = paizoo.prune(model, "magnitude", sparsity=0.8, apply=True)
    enforcer = MaskEnforcer(model, "hook")
    new = paizoo.Mask({n: ~t if n == "1.weight" else t for n, t in mask.items()})
    _replace_mask(enforcer, new)
    for module in (model[1], model[3]):
        assert torch.equal(module.weight_mask.bool(), new["1.weight"])
        assert torch.count_nonzero(module.weight[mask["1.weight"]]) == 0


def test_same_seed_same_accuracy_on_cpu(digits):
    train_set, test_set = digits
    runs = []
    for seed in (0, 0, 1):
        model, _ = _pruned(CNN)
        result = train(model, train_set, test_set, FAST, seed=seed, progress=False)
        runs.append([(m.train_loss, m.train_acc, m.test_acc) for m in result.history])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # the seed drives the batch order


def test_channels_last_changes_rounding_only(digits, tmp_path):
    """CPU default: conv nets train in channels-last layout (faster oneDNN kernels); the result
    equals contiguous training up to float rounding, and the model comes back contiguous."""
    train_set, test_set = digits
    assert TrainConfig().hash() == TrainConfig(channels_last=False).hash()
    weights, layouts, used = [], [], []
    for channels_last in (None, False):
        model, mask = _pruned(CNN)
        log = tmp_path / f"{channels_last}.jsonl"
        strides: set[int] = set()  # conv weight (8, 1, 3, 3): stride 1 on dim 1 only if NHWC
        model[0].register_forward_pre_hook(
            lambda m, args, seen=strides: seen.add(m.weight.stride(1)))
        train(model, train_set, test_set, FAST.replace(epochs=1, channels_last=channels_last),
              progress=False, log_path=str(log))
        used.append(json.loads(log.read_text().splitlines()[0])["channels_last"])
        assert strides == ({1} if channels_last is None else {9})
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
        layouts.append(all(p.is_contiguous() for p in model.parameters()))
        assert paizoo.Mask.from_model(model) == mask
    assert used == [True, False] and layouts == [True, True]
    for n in weights[0]:
        torch.testing.assert_close(weights[0][n], weights[1][n], rtol=1e-2, atol=1e-3)


def test_training_learns_and_leaves_global_rng_alone(digits):
    train_set, test_set = digits
    model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    result = train(model, train_set, test_set, TrainConfig(epochs=4, batch_size=32, lr=0.05),
                   progress=False)
    assert torch.equal(torch.rand(3), expected)
    assert result.mask_check is None  # dense model
    assert result.final_test_acc > 0.85  # digits is easy; a broken loop stays near 0.1
    assert result.best_test_acc == max(m.test_acc for m in result.history)


def test_jsonl_log_has_one_line_per_epoch(digits, tmp_path):
    train_set, test_set = digits
    model, mask = _pruned()
    path = tmp_path / "logs" / "run.jsonl"
    result = train(model, train_set, test_set, FAST.replace(epochs=3), log_path=str(path),
                   log_context={"run_key": "abc"}, progress=False)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in lines] == ["start", "epoch", "epoch", "epoch", "end"]
    assert lines[0]["run_key"] == "abc" and lines[0]["kept"] == mask.num_kept
    assert lines[0]["vectorised_batches"] is True
    for record, metrics in zip(lines[1:4], result.history, strict=True):
        assert record == pytest.approx(metrics.to_dict() | {"event": "epoch"})
        assert {"train_loss", "train_acc", "test_loss", "test_acc", "train_time_s"} <= set(record)
    assert lines[-1]["mask_check"]["nonzero_pruned"] == 0


@pytest.mark.parametrize(("config", "expected"), [
    (dict(schedule="step", milestones=(2, 4), gamma=0.1, lr=0.1, epochs=6),
     [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
    (dict(schedule="cosine", lr=0.2, epochs=4),
     [0.2 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]),
    (dict(schedule="constant", lr=0.3, epochs=2), [0.3, 0.3]),
])
def test_learning_rate_schedules(digits, config, expected):
    cfg = TrainConfig(**config)
    assert [cfg.lr_at(e) for e in range(cfg.epochs)] == pytest.approx(expected)
    train_set, test_set = digits
    small = TrainConfig(**config, batch_size=512)
    model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
    result = train(model, train_set, test_set, small, progress=False)
    assert [m.lr for m in result.history] == pytest.approx(expected)


def test_batches_visit_every_sample_once_per_epoch():
    class Data:
        x = torch.arange(10, dtype=torch.float32).reshape(10, 1)
        y = torch.arange(10)

        def __len__(self) -> int:
            return 10

    batches = Batches(Data(), 3, shuffle=True, device=torch.device("cpu"),
                      generator=torch.Generator().manual_seed(0))
    epochs = [torch.cat([y for _, y in batches]) for _ in range(2)]
    assert len(batches) == 3  # 3 + 3 + 3, the single leftover sample is dropped (batch norm)
    for ys in epochs:
        assert len(ys) == 9 and len(set(ys.tolist())) == 9
    assert not torch.equal(epochs[0], epochs[1])
    for x, y in batches:
        assert torch.equal(x[:, 0].long(), y)  # inputs stay paired with their targets
    ordered = Batches(Data(), 4, shuffle=False, device=torch.device("cpu"), drop_singleton=False)
    assert torch.equal(torch.cat([y for _, y in ordered]), torch.arange(10))


class _MapStyle(torch.utils.data.Dataset):
    """A dataset with nothing but ``__getitem__``/``__len__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._x, self._y = x, y

    def __len__(self) -> int:
        return len(self._x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._x[i], self._y[i]


def test_datasets_without_tensors_use_a_dataloader(digits):
    train_set, test_set = digits
    tensor_ds = torch.utils.data.TensorDataset(train_set.x, train_set.y)
    assert Batches(tensor_ds, 32, shuffle=True, device=torch.device("cpu")).vectorised
    plain_train = _MapStyle(train_set.x, train_set.y)
    plain_test = _MapStyle(test_set.x, test_set.y)
    assert not Batches(plain_train, 32, shuffle=True, device=torch.device("cpu")).vectorised
    model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
    result = train(model, plain_train, plain_test, TrainConfig(epochs=3, batch_size=32, lr=0.05),
                   progress=False)
    assert result.final_test_acc > 0.8


class _Augmenting:
    """Like paizoo.data's InMemoryDataset with augment=True: batched get_batch(index, generator)."""

    augment = True

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.calls = x, y, 0

    def __len__(self) -> int:
        return len(self.x)

    def get_batch(self, index: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        flip = torch.rand(len(index), generator=generator) < 0.5
        x = self.x[index].clone()
        x[flip] = x[flip].flip(-1)
        return x, self.y[index]


def test_augmenting_datasets_are_batched_through_get_batch(digits):
    train_set, test_set = digits
    results = []
    for _ in range(2):
        aug = _Augmenting(train_set.x, train_set.y)
        batches = Batches(aug, 64, shuffle=True, device=torch.device("cpu"))
        assert batches.vectorised
        model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
        result = train(model, aug, test_set, FAST, progress=False)
        assert aug.calls == FAST.epochs * len(batches)  # every training batch is augmented
        results.append([m.train_loss for m in result.history])
    assert results[0] == results[1]  # augmentation draws come from the seeded generator


def test_train_config_validation_and_hash():
    with pytest.raises(ConfigError, match=r"unknown option.*'epoch'.*valid options"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="milestones must lie"):
        TrainConfig(schedule="step", epochs=10, milestones=(5, 12))
    with pytest.raises(ConfigError, match="only used by schedule 'step'"):
        TrainConfig(schedule="cosine", milestones=(3,))
    with pytest.raises(ConfigError, match="lr must be > 0"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="must be an integer"):
        TrainConfig(epochs=2.5)
    with pytest.raises(ConfigError, match="nesterov"):
        TrainConfig(optimizer="adam", nesterov=True)
    with pytest.raises(ConfigError, match="samples_per_class"):
        PruneDataConfig(samples_per_class=0)
    base = TrainConfig(epochs=3, lr=0.1)
    assert base.hash() == TrainConfig.from_dict({"lr": 0.1, "epochs": 3}).hash()
    assert base.hash() == base.replace(device="cpu", eval_batch_size=7, num_workers=2).hash()
    assert base.hash() != base.replace(lr=0.05).hash()
    assert base.hash() != base.replace(weight_decay=5e-4).hash()
    assert TrainConfig.from_dict(base.to_dict()) == base
    # pinned: changing how configs hash would orphan every run already in users' stores
    assert base.hash() == "2349705cddbe"


def test_amp_is_refused_on_cpu(digits):
    train_set, test_set = digits
    model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
    with pytest.raises(RuntimeError, match="only supported on CUDA"):
        train(model, train_set, test_set, TrainConfig(epochs=1, amp=True, device="cpu"),
              progress=False)


def test_wandb_offline(digits, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from paizoo.training import WandbOptions

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train_set, test_set = digits
    model, _ = _pruned()
    train(model, train_set, test_set, FAST.replace(epochs=1),
          wandb=WandbOptions(project="paizoo-test", name="t"), progress=False)
    assert list(tmp_path.glob("wandb/offline-run-*"))


def test_warmup_and_subset_stay_out_of_the_hash_at_their_defaults():
    base = TrainConfig(epochs=3, lr=0.1)
    assert "warmup_steps" not in base.hashed_dict() and "train_subset" not in base.hashed_dict()
    assert base.hash() == base.replace(warmup_steps=0, train_subset=0).hash()
    assert base.replace(warmup_steps=10).hashed_dict()["warmup_steps"] == 10
    hashes = {base.hash(), base.replace(warmup_steps=10).hash(),
              base.replace(train_subset=500).hash(),
              base.replace(warmup_steps=10, train_subset=500).hash()}
    assert len(hashes) == 4
    assert TrainConfig.from_dict(base.replace(warmup_steps=3).to_dict()).warmup_steps == 3
    with pytest.raises(ConfigError, match="warmup_steps must be >= 0"):
        TrainConfig(warmup_steps=-1)
    with pytest.raises(ConfigError, match="train_subset must be >= 0"):
        TrainConfig(train_subset=-5)


def test_linear_warmup_against_a_hand_computed_schedule(digits):
    """10 samples, batch 4 -> batches of 4, 4, 2 per epoch; 2 epochs, cosine from 0.1, 4 warm-up
    steps: step t < 4 uses lr_at(epoch) * (t + 1) / 4."""
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.1, momentum=0.0, weight_decay=0.0,
                      schedule="cosine", warmup_steps=4)
    cos1 = 0.1 * 0.5 * (1 + math.cos(math.pi / 2))  # epoch 1 of 2: 0.05
    expected = [0.1 * 1 / 4, 0.1 * 2 / 4, 0.1 * 3 / 4,  # epoch 0, steps 0-2
                cos1 * 4 / 4, cos1, cos1]  # epoch 1, steps 3-5: warm-up over
    assert [cfg.lr_at_step(0, t) for t in range(3)] + [cfg.lr_at_step(1, t) for t in (3, 4, 5)] \
        == pytest.approx(expected)
    train_set, test_set = digits
    small = torch.utils.data.TensorDataset(train_set.x[:10], train_set.y[:10])
    seen: list[float] = []

    def record(optimizer: torch.optim.Optimizer, *_: object) -> None:
        seen.append(optimizer.param_groups[0]["lr"])

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(record)
    try:
        model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
        result = train(model, small, test_set, cfg, progress=False)
    finally:
        handle.remove()
    assert seen == pytest.approx(expected)
    assert [m.lr for m in result.history] == pytest.approx([0.1, cos1])  # the scheduled rate


def test_train_subset_trains_on_the_first_samples(digits, tmp_path):
    from paizoo.training.batching import training_subset

    train_set, test_set = digits
    sub = training_subset(train_set, 100)
    assert type(sub) is type(train_set) and len(sub) == 100
    assert torch.equal(sub.x, train_set.x[:100]) and torch.equal(sub.y, train_set.y[:100])
    plain = _MapStyle(train_set.x, train_set.y)
    sub_plain = training_subset(plain, 7)
    assert len(sub_plain) == 7 and torch.equal(sub_plain[6][0], train_set.x[6])
    assert training_subset(train_set, 0) is train_set
    with pytest.raises(ValueError, match="exceeds the"):
        training_subset(train_set, len(train_set) + 1)
    log = tmp_path / "log.jsonl"
    model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
    train(model, train_set, test_set, FAST.replace(train_subset=200), progress=False,
          log_path=str(log))
    start = json.loads(log.read_text().splitlines()[0])
    assert start["train_samples"] == 200 and start["test_samples"] == len(test_set)


def test_grad_clip_stays_out_of_the_hash_at_zero_and_is_checked():
    base = TrainConfig(epochs=3, lr=0.1)
    assert "grad_clip" not in base.hashed_dict()
    assert base.hash() == base.replace(grad_clip=0).hash() != base.replace(grad_clip=5.0).hash()
    assert TrainConfig.from_dict({"grad_clip": 2}).grad_clip == 2.0
    with pytest.raises(ConfigError, match="grad_clip must be >= 0"):
        TrainConfig(grad_clip=-1.0)


@pytest.mark.parametrize("clip", [1e-3, 1e3])
def test_grad_clip_one_step_against_a_hand_computed_update(digits, clip):
    """One SGD step (lr 0.5, no momentum or decay) on a masked MLP: the update is
    -lr * g * min(1, clip / ||g||), with g the gradient of the kept weights only (pruned
    weights' gradients do not count in the norm) and every other parameter's gradient; a small
    clip scales it, a large one leaves it alone."""
    import copy

    train_set, test_set = digits
    x, y = train_set.x[:16], train_set.y[:16]
    model = create_model(MLP, num_classes=10, in_channels=1, seed=0, input_size=8)
    mask = paizoo.prune(model, "random", sparsity=0.7, seed=0)
    reference = copy.deepcopy(model)
    mask.apply(model)
    # by hand: zero the pruned weights, take the gradient, mask it, clip by the global norm
    with torch.no_grad():
        for name, keep in mask.items():
            dict(reference.named_parameters())[name].mul_(keep)
    params = dict(reference.named_parameters())
    loss = nn.functional.cross_entropy(reference(x), y)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    for name, keep in mask.items():
        grads[name] = grads[name] * keep
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    factor = min(1.0, clip / (float(norm) + 1e-6))
    expected = {n: p.detach() - 0.5 * factor * grads[n] for n, p in params.items()}

    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.5, momentum=0.0, weight_decay=0.0,
                      schedule="constant", grad_clip=clip)
    train(model, torch.utils.data.TensorDataset(x, y), test_set, cfg, progress=False)
    got = {n: p.detach() for n, p in model.named_parameters()}
    for name, value in expected.items():
        actual = got.get(name, got.get(name.replace(".weight", ".weight_orig")))
        torch.testing.assert_close(actual, value, rtol=1e-5, atol=1e-6)
    assert (factor < 0.1) == (clip < 1)  # the small clip really clipped, the large one did not
