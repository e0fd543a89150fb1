"""The order an executor submits runs in (paizoo.leaderboard.schedule): multiply-accumulates
counted by hand, each seed's runs longest first with its dense runs leading, and dispatch
submitting in that order."""

from __future__ import annotations

from types import SimpleNamespace

from _executor_testlib import grid
from test_store import _record
from torch import nn

from paizoo.data import dataset_info
from paizoo.leaderboard import parse_config, run_leaderboard
from paizoo.leaderboard.executor import Executor, Finished, RunResult
from paizoo.leaderboard.schedule import forward_macs, longest_first
from paizoo.models import create_model


def test_forward_macs_by_hand():
    # LeNet-300-100 on 28x28 images: three Linear layers
    lenet = create_model("lenet_300_100", num_classes=10, in_channels=1)
    assert forward_macs(lenet, (1, 28, 28)) == 784 * 300 + 300 * 100 + 100 * 10
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 4x8x8 outputs, each 3x3x3 MACs
        nn.ReLU(), nn.BatchNorm2d(4),  # not counted
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise: 4x8x8 outputs, each 3x3
        nn.MaxPool2d(2), nn.Flatten(),  # 4x4x4 = 64 features
        nn.Linear(64, 10),
    )
    net.train()
    assert forward_macs(net, (3, 8, 8)) == 4 * 64 * 27 + 4 * 64 * 9 + 64 * 10
    assert net.training  # the model's mode is restored
    conv1d = nn.Conv1d(2, 5, kernel_size=4, stride=2)  # 5 x 7 outputs on length 16, each 2x4
    assert forward_macs(conv1d, (2, 16)) == 5 * 7 * 8


def _two_model_grid(tmp_path):
    return parse_config(grid(
        tmp_path, seeds=[0, 1], sparsities=[0.5, 0.9],
        models=[{"name": "mlp_4x128"}, {"name": "lenet_300_100"}],
        pruners=[{"name": "random"}, {"name": "synflow"}, {"name": "magnitude"}]))


def test_each_seed_runs_dense_first_then_longest_first(tmp_path):
    config = _two_model_grid(tmp_path)
    todo = list(enumerate(config.specs()))
    order = [(s.seed, s.model, s.pruner, s.sparsity)
             for _, s in longest_first(todo, dataset_info("digits"))]
    # on 8x8 digits: lenet_300_100 has 64*300 + 300*100 + 100*10 = 50,200 MACs per image,
    # mlp_4x128 64*128 + 3*128*128 + 128*10 = 58,624: the MLP's runs are the longer ones; a
    # pruner's 100 SynFlow rounds break the tie with one-shot pruners of the same model
    expected = []
    for seed in (0, 1):
        expected += [(seed, "mlp_4x128", "dense", 0.0), (seed, "lenet_300_100", "dense", 0.0)]
        for model in ("mlp_4x128", "lenet_300_100"):
            expected += [(seed, model, "synflow", 0.5), (seed, model, "synflow", 0.9)]
            expected += [(seed, model, p, s) for s in (0.5, 0.9) for p in ("random", "magnitude")]
    assert order == expected
    # a grid's positions come along unchanged
    assert sorted(longest_first(todo, dataset_info("digits"))) == todo


class _InProcess(Executor):
    """Runs each submitted task at once in this process, in submission order."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.done: list[Finished] = []

    def start(self) -> None:
        pass

    def capacity(self, resources):
        return 2

    def submit(self, tasks):
        for task in tasks:
            self.submitted.append(task.key)
            record = _record(task.spec)
            record.mask_path = None
            self.done.append(Finished(task, result=RunResult(run_key=task.key, record=record)))

    def wait(self, timeout):
        out, self.done = self.done, []
        return out

    def cancel(self) -> None:
        self.done.clear()


def test_dispatch_submits_longest_first(tmp_path):
    config = _two_model_grid(tmp_path)
    executor = _InProcess()
    from paizoo.results import ResultStore

    store = ResultStore(config.store)
    report = run_leaderboard(config, store, executor=executor, progress=False,
                             data=SimpleNamespace(name="digits"), echo=lambda _m: None)
    specs = config.specs()
    assert len(report.ran) == len(store) == len(specs)
    by_key = {s.key: (i, s) for i, s in enumerate(specs)}
    expected = [s.key for _, s in longest_first(list(enumerate(specs)), dataset_info("digits"))]
    assert executor.submitted == expected != [s.key for s in specs]
    assert by_key[executor.submitted[0]][1].pruner == "dense"
    # every pruned run found its dense accuracy in the store
    assert all(r.dense_test_acc is not None for r in store.records() if r.pruner != "dense")
