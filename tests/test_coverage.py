"""Prunable coverage (issue #12): cover=, include= extending the set, parametrized and tied
weights, the coverage warning, and token-input models in the data-free pruners."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import paizoo
from paizoo.diagnostics import ZeroScoreWarning
from paizoo.params import prunable_parameters
from paizoo.pruners._tokens import all_ones_embeddings
from paizoo.sparsity import kept_count


class Mixed(nn.Module):
    """One module of every kind, with packed and separate attention projections."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.pos = nn.Parameter(torch.zeros(1, 3, 8))
        self.packed = nn.MultiheadAttention(8, 2, batch_first=True)
        self.separate = nn.MultiheadAttention(8, 2, kdim=6, vdim=5, batch_first=True)
        self.lstm = nn.LSTM(8, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(8, 4, batch_first=True)
        self.cell = nn.RNNCell(8, 4)
        self.conv = nn.Conv1d(8, 8, 3)
        self.fc = nn.Linear(8, 2)


def test_cover_kinds_select_every_layer_and_direction() -> None:
    model = Mixed()
    default = set(prunable_parameters(model))
    assert default == {"packed.out_proj.weight", "separate.out_proj.weight", "conv.weight",
                       "fc.weight"}
    attention = set(prunable_parameters(model, cover="attention")) - default
    assert attention == {"packed.in_proj_weight", "separate.q_proj_weight",
                         "separate.k_proj_weight", "separate.v_proj_weight"}
    recurrent = set(prunable_parameters(model, cover="recurrent")) - default
    expected = {f"lstm.weight_{k}_l{layer}{d}" for k in ("ih", "hh") for layer in (0, 1)
                for d in ("", "_reverse")}
    expected |= {"gru.weight_ih_l0", "gru.weight_hh_l0", "cell.weight_ih", "cell.weight_hh"}
    assert recurrent == expected
    assert set(prunable_parameters(model, cover="embedding")) - default == {"embed.weight"}
    everything = set(prunable_parameters(model, cover="all"))
    assert everything == default | attention | recurrent | {"embed.weight"}
    assert set(prunable_parameters(model, cover=["attention", "recurrent"])) == (
        default | attention | recurrent)
    assert set(prunable_parameters(model, cover="default")) == default
    with pytest.raises(paizoo.CoverageError, match=r"unknown cover 'attn'.*attention"):
        prunable_parameters(model, cover="attn")


def test_include_narrows_extends_and_exclude_wins() -> None:
    model = Mixed()
    # narrowing: covered weights matching the glob; 1-D parameters (biases) are not reached
    assert list(prunable_parameters(model, include="packed.*")) == [
        "packed.in_proj_weight", "packed.out_proj.weight"]
    # extending: any parameter with >= 2 dims by glob, a 1-D one only by its exact name
    assert list(prunable_parameters(model, include=["pos", "fc.*"])) == ["pos", "fc.weight"]
    assert list(prunable_parameters(model, include=["fc.bias"])) == ["fc.bias"]
    assert "lstm.weight_hh_l1_reverse" in prunable_parameters(model, include="lstm.*")
    assert "lstm.bias_hh_l0" not in prunable_parameters(model, include="lstm.*")
    # exclude wins over include and cover
    got = prunable_parameters(model, include=["pos", "fc.*"], exclude="pos", cover="all")
    assert list(got) == ["fc.weight"]
    with pytest.warns(paizoo.CoverageWarning, match="attention weights") as record, \
            pytest.warns(ZeroScoreWarning, match="identically zero: pos;"):  # pos is all zeros
        mask = paizoo.prune(model, "magnitude", sparsity=0.5, include=["fc.weight", "pos"])
    coverage = [w for w in record if issubclass(w.category, paizoo.CoverageWarning)]
    assert "other weights" not in str(coverage[0].message)  # pos is pruned now
    assert list(mask) == ["pos", "fc.weight"]


def test_an_include_glob_reaching_only_biases_says_to_name_them() -> None:
    """``include="*.bias"`` selects nothing (a glob never reaches a 1-D parameter); the error
    said to loosen the patterns. It names the biases it reached and the exact-name form,
    which does prune them."""
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    with pytest.raises(paizoo.NoPrunableParametersError,
                       match=r"include matches the 1-D parameters '0.bias', '1.bias', '2.bias', "
                             r"which a glob never selects.*include=\['0.bias'\]"):
        paizoo.prune(model, "magnitude", sparsity=0.5, include="*.bias")
    with pytest.raises(paizoo.NoPrunableParametersError) as plain:
        paizoo.prune(model, "magnitude", sparsity=0.5, include="nothing.*")
    assert "1-D" not in str(plain.value)
    names = ["0.bias", "2.bias"]  # the Linear biases (LayerNorm's starts at zero)
    mask = paizoo.prune(model, "magnitude", sparsity=0.5, include=names)
    assert list(mask) == names and mask.num_kept == 3  # floor(0.5 * 5 + 1/2)


class RawWeights(nn.Module):
    """Weights held as raw parameters, multiplied by hand (no Linear module)."""

    def __init__(self) -> None:
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(torch.randn(5, 4)),
                                    nn.Parameter(torch.randn(2, 5))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.ws[0].T) @ self.ws[1].T


def test_a_model_with_nothing_covered_names_its_weights_and_the_fix() -> None:
    """A model whose weights are all outside the coverage (raw parameters, an LSTM alone) was
    told to "check the model"; the error names those weights and the option that prunes them
    (the CoverageWarning's line), and that option does prune them."""
    torch.manual_seed(0)
    with pytest.raises(paizoo.NoPrunableParametersError,
                       match=r"other weights \(2 tensor\(s\), 100.00%: ws.0, ws.1; prune them "
                             r"with include='<name>'\)"):
        paizoo.prune(RawWeights(), "magnitude", sparsity=0.5)
    mask = paizoo.prune(RawWeights(), "magnitude", sparsity=0.5, include=["ws.0", "ws.1"])
    assert list(mask) == ["ws.0", "ws.1"] and mask.num_kept == 15  # floor(0.5 * 30 + 1/2)
    with pytest.raises(paizoo.NoPrunableParametersError,
                       match=r"recurrent weights .*weight_ih_l0, weight_hh_l0; prune them with "
                             r"cover='recurrent'"):
        paizoo.prune(nn.LSTM(4, 3), "magnitude", sparsity=0.5)
    assert list(paizoo.prune(nn.LSTM(4, 3), "magnitude", sparsity=0.5, cover="recurrent")) == [
        "weight_ih_l0", "weight_hh_l0"]


def test_coverage_warning_names_kinds_and_fraction() -> None:
    model = Mixed()
    total = sum(p.numel() for p in model.parameters())
    dense = {
        "attention": sum(p.numel() for n, p in model.named_parameters()
                         if n.endswith("proj_weight") and "out_proj" not in n),
        "recurrent": sum(p.numel() for n, p in model.named_parameters()
                         if ".weight_" in n and n.split(".")[0] in ("lstm", "gru", "cell")),
        "embedding": 80,
        "other": 24,  # pos
    }
    with pytest.warns(paizoo.CoverageWarning) as record:
        mask = paizoo.prune(model, "random", sparsity=0.5)
    assert len(record) == 1
    message = str(record[0].message)
    assert mask.coverage is not None and mask.coverage.dense_counts == dense
    assert mask.coverage.model_total == total
    share = sum(dense.values()) / total
    assert f"{share:.2%} of the model's parameters" in message
    for kind, count in dense.items():
        assert f"{kind} weights (" in message and f"{count / total:.2%}" in message
    assert "cover='attention'" in message and "lstm.weight_ih_l0" in message
    assert message in mask.report()
    # once covered (and the positional encoding excluded by name) nothing is left to report
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = paizoo.prune(model, "random", sparsity=0.5, cover="all", exclude="pos")
    assert mask.coverage is not None and not mask.coverage.dense
    assert "coverage leaves" not in mask.report()


def _wn_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    parametrizations.weight_norm(model[0])
    return model


def test_weight_norm_pruned_exactly_through_v() -> None:
    model = _wn_mlp()
    total = 64 * 32 + 32 * 4
    mask = paizoo.prune(model, "magnitude", sparsity=0.9)
    key = "0.parametrizations.weight.original1"
    assert list(mask) == [key, "2.weight"]
    assert mask.num_kept == math.floor(0.1 * total + 0.5) and mask.num_total == total
    keep = mask[key]
    mask.apply(model)
    # independent computation of the weight-normed weight from the masked v and g
    v = model[0].parametrizations.weight.original1_orig.detach() * keep
    g = model[0].parametrizations.weight.original0.detach()
    expected = g * v / v.norm(dim=1, keepdim=True)
    assert torch.allclose(model[0].weight, expected)
    assert torch.equal(model[0].weight != 0, keep)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 64)).pow(2).sum().backward()
        opt.step()
    assert torch.equal(model[0].weight != 0, keep)
    assert paizoo.Mask.from_model(model) == mask


def test_include_naming_weight_norms_magnitude_is_refused() -> None:
    """``original0`` (the magnitude g) is never pruned; naming it in include= is an error that
    says what to name instead, never a silent skip. Globs that also reach the layer's weight
    (``0.*``, its logical name) prune it through v as before."""
    model = _wn_mlp()
    g_name = "0.parametrizations.weight.original0"
    for include, pattern in (([g_name, "2.weight"], g_name), (g_name, g_name),
                             ("*.original0", "*.original0"), (["2.*", "*[0]"], "*[0]"),
                             (["*.original0", "*.original1"], "*.original0")):
        with pytest.raises(paizoo.CoverageError, match=(
                rf"include pattern {re.escape(repr(pattern))} names {re.escape(g_name)}, the "
                r"magnitude "
                r"g of weight norm on 0\.weight.*name 0\.weight \(or "
                r"0\.parametrizations\.weight\.original1\)")):
            paizoo.prune(model, "magnitude", sparsity=0.5, include=include)
    v_name = "0.parametrizations.weight.original1"
    for include, expected in (("0.*", [v_name]), ("0.weight", [v_name]),
                              ("*.original*", [v_name]),
                              (["*.weight", "2.*"], [v_name, "2.weight"])):
        assert list(paizoo.Mask.ones(model, include=include)) == expected


def test_spectral_norm_pruned_through_original() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    parametrizations.spectral_norm(model[0])
    mask = paizoo.prune(model, "random", sparsity=0.5)
    key = "0.parametrizations.weight.original"
    mask.apply(model)
    assert torch.equal(model[0].weight != 0, mask[key])


class _Shift(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


class _Scale(nn.Module):
    paizoo_preserves_zeros = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x


def test_parametrizations_that_do_not_keep_zeros_are_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    parametrize.register_parametrization(model[0], "weight", _Shift())
    with pytest.raises(paizoo.CoverageError, match=r"0\.weight is computed by the "
                       r"parametrization _Shift.*exclude='0\.weight'.*paizoo_preserves_zeros"):
        paizoo.prune(model, "magnitude", sparsity=0.5)
    mask = paizoo.prune(model, "magnitude", sparsity=0.5, exclude="0.weight")
    assert list(mask) == ["1.weight"]

    orth = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    parametrizations.orthogonal(orth[0])
    with pytest.raises(paizoo.CoverageError, match="does not keep the zeros"):
        paizoo.prune(orth, "magnitude", sparsity=0.5)

    with pytest.warns(FutureWarning, match="deprecated"):
        legacy = nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(4, 4)), nn.Linear(4, 2))
    with pytest.raises(paizoo.CoverageError, match=r"legacy hook-based.*parametrizations"):
        paizoo.prune(legacy, "magnitude", sparsity=0.5)

    scaled = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    parametrize.register_parametrization(scaled[0], "weight", _Scale())
    mask = paizoo.prune(scaled, "random", sparsity=0.5, apply=True)
    assert torch.equal(scaled[0].weight != 0, mask["0.parametrizations.weight.original"])


def test_weight_norm_mask_emptying_a_row_is_refused() -> None:
    model = _wn_mlp()
    keep = torch.ones(32, 64, dtype=torch.bool)
    keep[5] = False
    mask = paizoo.Mask({"0.parametrizations.weight.original1": keep})
    with pytest.raises(paizoo.CoverageError, match=r"1 slice\(s\).*0/0"):
        mask.apply(model)


def test_a_refused_weight_norm_mask_leaves_the_model_untouched() -> None:
    # the refused weight is the mask's second entry: nothing is applied, not even the first
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    parametrizations.weight_norm(model[2])
    first = torch.ones(8, 8, dtype=torch.bool)
    first[0, 0] = False
    second = torch.ones(4, 8, dtype=torch.bool)
    second[1] = False
    mask = paizoo.Mask({"0.weight": first, "2.parametrizations.weight.original1": second})
    with pytest.raises(paizoo.CoverageError, match=r"1 slice\(s\)"):
        mask.apply(model)
    assert not paizoo.reparam.is_masked(model) and "weight" in model[0]._parameters


def test_tied_linear_layers_one_entry_both_masked() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False)
    b.weight = a.weight
    model = nn.Sequential(a, nn.ReLU(), b)
    mask = paizoo.prune(model, "magnitude", sparsity=0.5, apply=True)
    assert list(mask) == ["0.weight"] and mask.num_total == 36
    x = torch.randn(3, 6)
    w = a.weight_orig.detach() * mask["0.weight"]
    assert torch.allclose(model(x), F.linear(F.relu(F.linear(x, w)), w))
    paizoo.remove_masks(model)
    assert model[2].weight is model[0].weight  # still tied, now with the zeros baked in
    assert torch.equal(model[0].weight != 0, mask["0.weight"])


def test_a_mask_naming_one_tied_tensor_twice_is_refused() -> None:
    # state_dict() lists a tied tensor under every name; a mask built from it has one entry per
    # name, which would count the 36 weights twice and intersect the two masks on apply
    a, b = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False)
    b.weight = a.weight
    model = nn.Sequential(a, nn.ReLU(), b)
    assert list(model.state_dict()) == ["0.weight", "2.weight"]
    keep = torch.ones(6, 6, dtype=torch.bool)
    mask = paizoo.Mask({"0.weight": keep, "2.weight": ~keep})
    with pytest.raises(paizoo.MaskMismatchError, match=r"2\.weight: the same tensor as "
                       r"'0\.weight'"):
        mask.apply(model)
    assert not paizoo.reparam.is_masked(model)


def test_cover_that_is_not_a_kind_name_is_a_coverage_error() -> None:
    model = nn.Sequential(nn.Linear(4, 2))
    for bad in (True, 1, ["attention", None]):
        with pytest.raises(paizoo.CoverageError, match="unknown cover"):
            prunable_parameters(model, cover=bad)  # type: ignore[arg-type]


def test_synflow_token_input_is_the_mean_row_of_every_embedding() -> None:
    """SynFlow on a token model equals SynFlow on the same network with the embedding replaced
    by a Linear layer fed the uniform one-hot mixture (1/V) 1 (checked by hand)."""
    torch.manual_seed(0)
    vocab, dim, seq = 7, 5, 3
    model = nn.Sequential(nn.Embedding(vocab, dim), nn.Flatten(), nn.Linear(seq * dim, 2))
    with all_ones_embeddings(model):
        out = model(torch.zeros(1, seq, dtype=torch.long))
    assert torch.allclose(out, model[2](model[0].weight.mean(0).repeat(seq)[None]))
    mask = paizoo.prune(model, "synflow", sparsity=0.5, input_shape=(seq,), rounds=1,
                        cover="embedding")
    # by hand: R = 1^T W2 (repeat of mean |E|) with |.| everywhere; score = |theta dR/dtheta|
    emb = model[0].weight.detach().double().abs().requires_grad_(True)
    w2 = model[2].weight.detach().double().abs().requires_grad_(True)
    b2 = model[2].bias.detach().double().abs()
    r = (F.linear(emb.mean(0).repeat(seq)[None], w2, b2)).sum()
    g_emb, g_w2 = torch.autograd.grad(r, [emb, w2])
    scores = torch.cat([(emb * g_emb).flatten(), (w2 * g_w2).flatten()]).detach()
    kept = torch.cat([mask["0.weight"].flatten(), mask["2.weight"].flatten()])
    assert int(kept.sum()) == kept_count(0.5, scores.numel())
    assert float(scores[kept].min()) >= float(scores[~kept].max()) * (1 - 1e-12)


def test_a_token_model_is_probed_with_a_float_input_once_per_prune_call() -> None:
    """The base class's input probe tells the pruners that the model takes token ids: no
    pruner runs its own float probe (NTK-SAP ran one per round, SynFlow and PHEW one each)."""
    model = nn.Sequential(nn.Embedding(7, 5), nn.Flatten(), nn.Linear(3 * 5, 2))
    floats: list[torch.dtype] = []
    model.register_forward_pre_hook(
        lambda m, args: floats.append(args[0].dtype) if args[0].is_floating_point() else None)
    for pruner, options in (("synflow", {"rounds": 5}), ("ntksap", {"rounds": 4, "draws": 1})):
        floats.clear()
        mask = paizoo.prune(model, pruner, sparsity=0.5, input_shape=(3,), cover="embedding",
                            **options)
        assert floats == [torch.float32] and mask.num_kept == kept_count(0.5, 7 * 5 + 15 * 2)
    floats.clear()
    with pytest.raises(paizoo.UnsupportedLayerError, match="cannot start from token ids"):
        paizoo.prune(model, "phew", sparsity=0.5, input_shape=(3,))
    assert floats == [torch.float32]


def test_data_free_pruners_on_a_token_model_that_cannot_take_token_ids() -> None:
    class Tokens(nn.Module):  # token ids in, one sequence at a time (NTK-SAP feeds a batch)
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(3, 4)
            self.fc = nn.Linear(4, 2)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            if tokens.shape[0] != 1:
                raise ValueError("one sequence at a time")
            return self.fc(self.embed(tokens).mean(1))

    with pytest.raises(paizoo.UnsupportedLayerError, match=r"token ids of shape \(2, 4\).*"
                       r"forward failed: one sequence at a time"):
        paizoo.prune(Tokens(), "ntksap", sparsity=0.5, input_shape=(4,), rounds=1, draws=1,
                     batch_size=2)


def test_data_free_pruners_on_a_float_model_with_an_embedding_elsewhere() -> None:
    class Conditioned(nn.Module):  # float input, an embedding looked up by a fixed label
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.label = nn.Embedding(3, 4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            labels = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            return self.fc(x) + self.label(labels)[:, :2]

    for pruner in ("synflow", "ntksap"):
        options = {"draws": 1, "batch_size": 2} if pruner == "ntksap" else {}
        with pytest.warns(paizoo.CoverageWarning, match="label.weight"):
            mask = paizoo.prune(Conditioned(), pruner, sparsity=0.5, input_shape=(4,),
                                rounds=1, **options)
        assert list(mask) == ["fc.weight"] and mask.num_kept == 4


def test_cli_cover_and_include(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "paizoo", "prune", "--model", "lenet_300_100", "--pruner",
             "magnitude", "--sparsity", "0.5", "--input-shape", "1,28,28", *extra],
            capture_output=True, text=True, check=False)

    bad = run("--cover", "attn")
    assert bad.returncode != 0 and bad.stderr.count("\n") <= 1 + bad.stderr.count("Warning")
    assert "paizoo: error: unknown cover 'attn'" in bad.stdout + bad.stderr
    narrowed = run("--cover", "all", "--include", "fc1.*", "--include", "fc3.bias")
    assert narrowed.returncode == 0, narrowed.stderr
    table = narrowed.stdout.splitlines()
    rows = [line.split()[0] for line in table if line.startswith("fc")]
    assert rows == ["fc1.weight", "fc3.bias"]  # narrowed to fc1, extended to a named bias


def _independent_snip_scores(model: nn.Module, x: torch.Tensor,
                             y: torch.Tensor) -> dict[str, torch.Tensor]:
    """|theta * dL/dtheta| of the prunable tensors, by autograd on a copy (no paizoo code)."""
    work = copy.deepcopy(model)
    v = work[0].parametrizations.weight.original1
    loss = F.cross_entropy(work(x), y)
    gv, g2 = torch.autograd.grad(loss, [v, work[2].weight])
    return {"0.parametrizations.weight.original1": (v * gv).abs().detach(),
            "2.weight": (work[2].weight * g2).abs().detach()}


def test_snip_keeps_the_best_weight_of_every_weight_normed_row() -> None:
    """Plain SNIP at 0.9 empties rows of the weight-normed fc1 (a mask apply must refuse);
    paizoo keeps each row's best-scored weight and the best of the rest for the remaining
    budget, computed here independently (autograd scores, Python sorting)."""
    model = _wn_mlp()
    torch.manual_seed(1)
    x, y = torch.randn(16, 64), torch.randint(4, (16,))
    scores = _independent_snip_scores(model, x, y)
    key = "0.parametrizations.weight.original1"
    total = sum(t.numel() for t in scores.values())
    k = kept_count(0.1, total)
    flat = [(float(v), name, i) for name, t in scores.items()
            for i, v in enumerate(t.reshape(-1).tolist())]
    order = sorted(range(len(flat)), key=lambda j: (-flat[j][0], j))  # stable: first wins ties
    plain = {(flat[j][1], flat[j][2]) for j in order[:k]}
    rows_plain = {i // 64 for name, i in plain if name == key}
    assert len(rows_plain) < 32  # unconstrained SNIP leaves some rows of fc1 empty
    forced = {(key, r * 64 + int(scores[key][r].argmax())) for r in range(32)}
    rest = [j for j in order if (flat[j][1], flat[j][2]) not in forced]
    expected = forced | {(flat[j][1], flat[j][2]) for j in rest[:k - 32]}

    mask = paizoo.prune(model, "snip", sparsity=0.9, data=(x, y))
    got = {(name, i) for name in mask for i in
           torch.nonzero(mask[name].reshape(-1)).reshape(-1).tolist()}
    assert got == expected and mask.num_kept == k
    mask.apply(model)
    assert torch.isfinite(model(x)).all()
    assert torch.equal(model[0].weight != 0, mask[key])


@pytest.mark.parametrize("pruner", ["random", "magnitude", "snip", "iterative_snip", "force",
                                    "grasp", "synflow", "prospr", "ntksap", "phew", "expander"])
def test_every_pruner_keeps_a_weight_in_every_weight_normed_row(pruner: str) -> None:
    """Each of these left rows of the weight-normed layer empty at sparsity 0.9 or 0.99 (a mask
    that apply refused); now every row keeps a weight, the kept count stays exact, and the
    mask applies and trains a step."""
    torch.manual_seed(1)
    x, y = torch.randn(16, 64), torch.randint(4, (16,))
    for sparsity in (0.9, 0.98):  # 0.98 keeps 44 weights for fc1's 32 rows + fc2
        model = _wn_mlp()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mask = paizoo.prune(model, pruner, sparsity=sparsity, data=(x, y),
                                input_shape=(64,))
        # the one expected warning: a layer (FORCE: fc2) that keeps no weight, said once
        collapsed = mask.collapsed_layers()
        assert [type(w.message) for w in caught] == [paizoo.LayerCollapseWarning] * bool(collapsed)
        assert "0.parametrizations.weight.original1" not in collapsed
        keep = mask["0.parametrizations.weight.original1"]
        assert bool(keep.any(1).all())
        assert mask.num_kept == kept_count(1 - sparsity, mask.num_total)
        mask.apply(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        assert torch.isfinite(model(x)).all() and torch.equal(model[0].weight != 0, keep)


def test_a_sparsity_below_one_weight_per_weight_normed_row_is_refused_up_front() -> None:
    model = _wn_mlp()
    x, y = torch.randn(16, 64), torch.randint(4, (16,))
    # 0.995 keeps 11 weights for 32 rows: refused before SynFlow's 100 rounds start
    with pytest.raises(paizoo.SparsityError, match=r"all layers: 11 kept for 32 slices.*"
                       r"remove_parametrizations"):
        paizoo.prune(model, "synflow", sparsity=0.995, input_shape=(64,))
    # per layer: 1% of fc1's 2048 weights is 20, fewer than its 32 rows
    with pytest.raises(paizoo.SparsityError,
                       match=r"'0\.parametrizations\.weight\.original1': 20 kept for 32"):
        paizoo.prune(model, "snip", sparsity=0.99, scope="layer", data=(x, y))
    # excluding the weight-normed layer lifts the constraint
    mask = paizoo.prune(model, "synflow", sparsity=0.995, input_shape=(64,), rounds=2,
                        exclude="0.*")
    assert list(mask) == ["2.weight"]


class _CrossAttention(nn.Module):
    """Separate q/k/v projections (kdim, vdim != embed_dim) and a raw positional parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 3, 8))
        self.attn = nn.MultiheadAttention(8, 2, kdim=6, vdim=5, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        k, v = q[..., :6], q[..., 3:]
        return self.fc(self.attn(q + self.pos, k, v, need_weights=False)[0].mean(1))


def test_separate_projections_and_an_included_raw_parameter_train_masked() -> None:
    torch.manual_seed(0)
    model = _CrossAttention()
    mask = paizoo.prune(model, "random", sparsity=0.5, cover="attention",
                        include=["*.weight", "*_proj_weight", "pos"], apply=True)
    assert list(mask) == ["pos", "attn.q_proj_weight", "attn.k_proj_weight",
                          "attn.v_proj_weight", "attn.out_proj.weight", "fc.weight"]
    x = torch.randn(4, 3, 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    out = model(x)
    plain = _CrossAttention()
    state = model.state_dict()
    plain.load_state_dict({k[: -len("_orig")]: v * state[k[: -len("_orig")] + "_mask"]
                           for k, v in state.items() if k.endswith("_orig")}
                          | {k: v for k, v in state.items()
                             if not k.endswith(("_orig", "_mask"))})
    assert torch.allclose(out, plain(x), atol=1e-6)
    for name, keep in mask.items():
        path, _, attr = name.rpartition(".")
        tensor = getattr(model.get_submodule(path) if path else model, attr)
        assert bool((tensor.detach()[~keep] == 0).all()), name


def test_weight_standardised_convolutions_are_refused() -> None:
    """timm's StdConv2d computes (w - mean) / std in forward: a mask on w is not exact."""
    std_conv = pytest.importorskip("timm.layers.std_conv")
    conv = std_conv.StdConv2d(3, 4, 3)
    with torch.no_grad():  # the forward turns a zeroed entry into a non-zero one
        w = conv.weight.clone()
        conv.weight[0, 0, 0, 0] = 0
        effective = F.batch_norm(conv.weight.reshape(1, 4, -1), None, None, training=True,
                                 eps=conv.eps).reshape_as(w)
    assert effective[0, 0, 0, 0] != 0
    model = nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 5, 5))
    with pytest.raises(paizoo.CoverageError, match=r"0\.weight belongs to a StdConv2d.*"
                       r"exclude='0\.weight'"):
        paizoo.prune(model, "magnitude", sparsity=0.5)
    assert list(paizoo.prune(model, "magnitude", sparsity=0.5, exclude="0.weight")) == [
        "2.weight"]


class _PatchNet(nn.Module):
    """An image model whose learnt positions are an nn.Embedding looked up by patch index (or,
    with ``table=True``, the same values as a plain parameter): not a token-input model."""

    def __init__(self, table: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 8, 4, 4, bias=False)
        self.pos = nn.Embedding(4, 8)
        self.head = nn.Linear(8, 3, bias=False)
        if table:
            self.pos_table = nn.Parameter(self.pos.weight.detach().clone())
            del self.pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)
        positions = torch.arange(h.shape[1], device=x.device)
        h = h + (self.pos_table[positions] if hasattr(self, "pos_table") else self.pos(positions))
        return self.head(torch.relu(h).mean(1))


@pytest.mark.parametrize("config", [{"rounds": 3}, {"rounds": 3, "precision": "scaled32"}])
def test_synflow_on_an_image_model_with_embedded_positions(config) -> None:
    # the embedding does not read the input: SynFlow feeds the images' all-ones input and the
    # positions are looked up as usual, exactly as for the same table held as a parameter
    with pytest.warns(paizoo.CoverageWarning, match="pos.weight"):
        mask = paizoo.prune(_PatchNet(), "synflow", sparsity=0.5, input_shape=(3, 8, 8),
                            **config)
    with pytest.warns(paizoo.CoverageWarning, match="pos_table"):
        twin = paizoo.prune(_PatchNet(table=True), "synflow", sparsity=0.5,
                            input_shape=(3, 8, 8), **config)
    assert mask == twin


def test_ntksap_on_an_image_model_with_embedded_positions() -> None:
    config = {"rounds": 1, "draws": 1, "batch_size": 4}
    with pytest.warns(paizoo.CoverageWarning, match="pos.weight"):
        mask = paizoo.prune(_PatchNet(), "ntksap", sparsity=0.5, input_shape=(3, 8, 8), **config)
    with pytest.warns(paizoo.CoverageWarning, match="pos_table"):
        twin = paizoo.prune(_PatchNet(table=True), "ntksap", sparsity=0.5,
                            input_shape=(3, 8, 8), **config)
    assert mask == twin


def test_phew_names_the_real_obstacle_of_an_image_model_with_embedded_positions() -> None:
    # not "cannot start from token ids": the model takes images; PHEW stops at what it cannot
    # follow (here the transpose of the patch tokens)
    with pytest.raises(paizoo.UnsupportedLayerError, match="transpose") as info:
        paizoo.prune(_PatchNet(), "phew", sparsity=0.5, input_shape=(3, 8, 8))
    assert "token ids" not in str(info.value)


def test_token_placeholder_avoids_the_padding_index() -> None:
    """A model that masks its padding positions (tokens == padding_idx) would mask every
    position if fed padding ids, and attention over no key is NaN."""

    class Padded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(12, 8, padding_idx=0)
            layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            self.head = nn.Linear(8, 3)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            h = self.encoder(self.embed(tokens), src_key_padding_mask=tokens == 0)
            return self.head(h.mean(1))

    torch.manual_seed(0)
    for pruner, options in (("synflow", {"rounds": 2}),
                            ("ntksap", {"rounds": 1, "draws": 1, "batch_size": 4})):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mask = paizoo.prune(Padded(), pruner, sparsity=0.5, input_shape=(5,), **options)
        # only the coverage warning: fed padding ids, attention sees no key and out_proj
        # collapses (LayerCollapseWarning)
        assert [w.category for w in caught] == [paizoo.CoverageWarning], [
            str(w.message) for w in caught]
        assert mask.num_kept == kept_count(0.5, mask.num_total)


def test_leaderboard_pruner_config_passes_cover_to_prune() -> None:
    """A leaderboard/train pruner ``config`` goes to ``paizoo.prune`` as keywords, so
    ``{cover: recurrent}`` in a grid's pruner entry prunes the recurrent weights."""
    from types import SimpleNamespace

    from paizoo.results import RunSpec
    from paizoo.training import TrainConfig
    from paizoo.training.experiment import prune_for

    torch.manual_seed(0)
    model = nn.Sequential(nn.LSTM(4, 6, batch_first=True))
    spec = RunSpec(dataset="synthetic", model="lstm", pruner="random", sparsity=0.5, seed=0,
                   train=TrainConfig(), pruner_config={"cover": "recurrent"})
    mask, _ = prune_for(spec, model, SimpleNamespace(info=SimpleNamespace(input_shape=(3, 4))))
    assert list(mask) == ["0.weight_ih_l0", "0.weight_hh_l0"]
