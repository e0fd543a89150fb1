"""Init-aware diagnostics: why a layer's scores vanish, and whether a collapse disconnects the net.

Many current architectures start some residual branches switched off: timm ResNets zero the
scale of the last norm layer of every residual branch (``zero_init_last=True``), ConvNeXt
multiplies each block's output by a layer scale of 1e-6 (timm ``ls_init_value``, torchvision
``layer_scale``), CaiT/ViT variants use ``LayerScale`` with ``init_values`` of 1e-5 or less. At
such an initialisation every gradient- or flow-based score of the weights inside the branch is
exactly zero (a zero scale) or about 1e-6 of the others (a near-zero one), so pruners that rank
by these scores remove the whole branch ("layer collapse"). The network usually stays connected
through the shortcuts, but the mask is degenerate.

This module

* finds (near-)zero scales before scoring (:func:`find_near_zero_scales`): the ``weight`` of
  normalisation layers and layer-scale parameters (``gamma``, names containing ``scale``) whose
  largest absolute value is at most ``tol``;
* decides whether a mask leaves the network connected (:func:`connectivity`): by the number of
  input -> output paths of the linearised network (:mod:`paizoo.metrics.linearize`, the
  matrix-free computation behind the ``effective`` metrics), and, where a model has no
  linearisation (layer scales, attention, embeddings), by whether the masked network's output
  still depends on its input (two random inputs, exact comparison);
* turns both into one warning after pruning (:func:`warn_after_pruning`), called by every
  pruner: :class:`BranchCollapseWarning` when the collapsed layers only remove residual
  branches, :class:`~paizoo.masks.LayerCollapseWarning` when no input -> output path is left,
  and :class:`ZeroScoreWarning` when layers scored identically zero still keep weights (chosen
  by the tie-break rule, not by the pruner). Each names the scales that cause it and the fix;
* offers the fix that needs no change of model: :func:`with_unit_scales` returns a copy with
  those scales set to 1, to be scored instead of the model (the mask fits both).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import PaizooError
from .masks import LayerCollapseWarning

#: a scale whose largest absolute value is at most this is "near zero"
DEFAULT_TOL = 1e-3

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


class BranchCollapseWarning(LayerCollapseWarning):
    """Some layers keep no weight, but the network stays connected through its shortcuts: the
    residual branches that hold these layers are removed."""


class ZeroScoreWarning(UserWarning):
    """Some layers' scores are identically zero, so the weights kept there are chosen by the
    tie-break rule alone."""


@dataclass(frozen=True)
class ScaleFinding:
    """One (near-)zero multiplicative scale of a model at initialisation.

    Attributes:
        name: the parameter's name (``model.named_parameters()``).
        kind: ``"norm"`` (the weight of a normalisation layer) or ``"layer_scale"``.
        max_abs: the largest absolute value of the parameter.
        block: the module whose output the scale multiplies: the parent of a normalisation or
            ``*Scale`` module, the owning module of a bare layer-scale parameter.
    """

    name: str
    kind: str
    max_abs: float
    block: str


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "Norm" in type(module).__name__


def _is_layer_scale(param_name: str, module: nn.Module) -> bool:
    leaf = param_name.lower()
    return (leaf in ("gamma", "ls", "alpha") or "scale" in leaf
            or ("Scale" in type(module).__name__ and leaf == "weight"))


def find_near_zero_scales(model: nn.Module, tol: float = DEFAULT_TOL) -> list[ScaleFinding]:
    """Normalisation weights and layer scales of ``model`` with ``max |value| <= tol``.

    Only floating-point parameters that are not Conv/Linear weights are considered: the
    ``weight`` of normalisation modules (``BatchNorm*``, ``LayerNorm``, ``GroupNorm``, any module
    whose class name contains ``Norm``, e.g. timm's ``BatchNormAct2d``) and layer-scale
    parameters (``gamma``, names containing ``scale``, the ``weight`` of a ``*Scale`` module).
    Biases, embeddings and tokens are never reported. Cheap: no forward pass.
    """
    from .params import prunable_parameters

    try:
        prunable = {id(p) for p in prunable_parameters(model).values()}
    except PaizooError:
        prunable = set()
    found = []
    for module_name, module in model.named_modules():
        norm = _is_norm(module)
        for leaf, p in module.named_parameters(recurse=False):
            if id(p) in prunable or not p.is_floating_point() or p.numel() == 0:
                continue
            if norm and leaf == "weight":
                kind = "norm"
            elif not norm and _is_layer_scale(leaf, module):
                kind = "layer_scale"
            else:
                continue
            max_abs = float(p.detach().abs().max())
            if max_abs > tol:
                continue
            owner_is_scale_module = norm or "Scale" in type(module).__name__
            block = module_name.rpartition(".")[0] if owner_is_scale_module else module_name
            name = f"{module_name}.{leaf}" if module_name else leaf
            found.append(ScaleFinding(name, kind, max_abs, block))
    return found


def with_unit_scales(model: nn.Module, findings: Sequence[ScaleFinding] | None = None
                     ) -> nn.Module:
    """A deep copy of ``model`` with every (near-)zero scale of ``findings`` set to 1.

    ``findings`` defaults to :func:`find_near_zero_scales`. Score the copy instead of the model
    (``paizoo.prune(with_unit_scales(model), ...)``): prunable weights keep their names and
    values, so the mask applies to ``model`` as it is.
    """
    from .pruners.base import _working_copy

    findings = find_near_zero_scales(model) if findings is None else findings
    copy = _working_copy(model)
    params = dict(copy.named_parameters())
    with torch.no_grad():
        for f in findings:
            params[f.name].fill_(1.0)
    return copy


@dataclass(frozen=True)
class Connectivity:
    """Whether a masked network still has an input -> output path.

    Attributes:
        connected: True, False, or None when it could not be decided.
        how: how it was decided (or why not), in words, for messages.
    """

    connected: bool | None
    how: str


def connectivity(model: nn.Module, mask: Mapping[str, torch.Tensor],
                 input_shape: Sequence[int] | None, seed: int = 0) -> Connectivity:
    """Does ``mask`` leave ``model`` with at least one input -> output path?

    First by counting the paths of the linearised network (norms and activations as identity,
    every kept weight an edge; :func:`paizoo.metrics.linearize.count_paths_log10`), a structural
    answer independent of the weights' values. Where that finds no path, or the model has no
    linearisation (parameters outside Conv/Linear/norm layers, such as layer scales, tokens or
    attention), it is decided functionally: the masked network (weights times mask, eval mode)
    is run on two random inputs (random token ids for a model with an ``nn.Embedding``), and it
    is connected iff the two outputs differ. A disconnected
    network's output is computed from biases alone and is bit-identical for both; a path count
    of zero can miss the signal that passes a multiplicative gate whose own branch is pruned
    (squeeze-and-excitation: ``x * sigmoid(0)``), which the functional check sees.
    """
    if input_shape is None:
        return Connectivity(None, "not checked: no input_shape")
    shape = tuple(int(s) for s in input_shape)
    from .metrics.linearize import count_paths_log10, linearized_copy

    try:
        paths = count_paths_log10(linearized_copy(model, mask), shape)
    except Exception:
        paths = math.nan
    if not math.isnan(paths) and paths > -math.inf:
        count = "more than 1e308" if paths == math.inf else f"10^{paths:.1f}"
        return Connectivity(True, f"{count} input -> output paths remain")
    functional = _functional_connectivity(model, mask, shape, seed)
    if paths == -math.inf and functional.connected is not True:
        return Connectivity(False, "no input -> output path is left")
    # no path in the linearised network, yet the output depends on the input: a multiplicative
    # gate (squeeze-and-excitation) whose branch is pruned still passes the signal (sigmoid(0))
    return functional


def _functional_connectivity(model: nn.Module, mask: Mapping[str, torch.Tensor],
                             shape: tuple[int, ...], seed: int) -> Connectivity:
    from .params import parameter_table
    from .pruners.base import _working_copy
    from .reparam import remove_masks

    try:
        work = _working_copy(model)
        remove_masks(work)
        # every parameter by every name (not only the default coverage: a mask may hold
        # attention, recurrent, embedding or included weights, or a tied tensor's other name)
        params = {n: info.param for info in parameter_table(work).values()
                  for n in (info.name, *info.aliases)}
        device = next(iter(params.values())).device
        with torch.no_grad():
            for name, keep in mask.items():
                params[name].mul_(keep.to(device=device, dtype=params[name].dtype))
            work.eval()
            gen = torch.Generator().manual_seed(seed)
            # a token-input model (an nn.Embedding) reads random ids valid for every embedding
            vocab = min((m.num_embeddings for m in work.modules()
                         if isinstance(m, (nn.Embedding, nn.EmbeddingBag))), default=None)

            def draw() -> torch.Tensor:
                if vocab is not None:
                    return torch.randint(vocab, (1, *shape), generator=gen)
                return torch.rand((1, *shape), generator=gen)

            # one sample per call: the same kernels on the same shapes, so a constant output is
            # bit-identical (rows of one batch may take different GEMM paths)
            outs = [work(draw().to(device)) for _ in range(2)]
    except Exception as exc:
        return Connectivity(None, f"not checked ({type(exc).__name__}: {exc})")
    if not all(isinstance(out, torch.Tensor) for out in outs):
        return Connectivity(None, f"not checked: the model returned a {type(outs[0]).__name__}")
    if torch.equal(outs[0], outs[1]):
        return Connectivity(False, "the masked network's output no longer depends on its input")
    return Connectivity(True, "the masked network's output still depends on its input")


def fix_hint(model: nn.Module, findings: Sequence[ScaleFinding]) -> str:
    """How to avoid scoring at (near-)zero scales, for the model family at hand."""
    kinds = {f.kind for f in findings}
    family = type(model).__module__.split(".")[0]
    cls = type(model).__name__
    hints = []
    if "norm" in kinds:
        hints.append("timm.create_model(..., zero_init_last=False)" if family == "timm"
                     else "do not zero-initialise the last norm of each residual branch "
                          "(torchvision: zero_init_residual=False)")
    if "layer_scale" in kinds:
        if family == "timm" and "ConvNeXt" in cls:
            hints.append("timm.create_model(..., ls_init_value=1.0)")
        elif family == "timm":
            hints.append("timm.create_model(..., init_values=None) (no layer scale)")
        elif family == "torchvision":
            hints.append("torchvision's layer_scale=1.0")
        else:
            hints.append("a layer-scale init of 1")
    return (f"create the model with {' / '.join(hints)}, or score a copy with these scales set "
            "to 1 and apply the mask to the model: mask = paizoo.prune(paizoo.diagnostics."
            "with_unit_scales(model), ...)")


def _describe(findings: Sequence[ScaleFinding], limit: int = 3) -> str:
    names = ", ".join(f"{f.name}={f.max_abs:.0e}" if f.max_abs else f"{f.name}=0"
                      for f in findings[:limit])
    more = f" and {len(findings) - limit} more" if len(findings) > limit else ""
    return f"{len(findings)} scale(s) initialised to (near) zero ({names}{more})"


def _in_blocks(layers: Sequence[str], findings: Sequence[ScaleFinding]) -> list[str]:
    """The layers that sit in a block whose output a (near-)zero scale multiplies."""
    blocks = [f.block + "." if f.block else "" for f in findings]
    return [n for n in layers if any(n.startswith(b) for b in blocks)]


def _names(names: Sequence[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit
                                       else "")


def warn_after_pruning(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    *,
    input_shape: Sequence[int] | None,
    zero_scored: Sequence[str] = (),
    findings: Sequence[ScaleFinding] = (),
    seed: int = 0,
    stacklevel: int = 2,
) -> None:
    """Warn about collapsed and zero-scored layers of a fresh mask, naming cause and fix.

    Args:
        model: the pruned model (as the caller passed it).
        mask: the mask just made.
        input_shape: one sample's shape, for the connectivity check (None: not checked).
        zero_scored: layers whose scores were identically zero (first round).
        findings: the model's (near-)zero scales (:func:`find_near_zero_scales`).
        stacklevel: as for :func:`warnings.warn`, counted from the caller of this function.
    """
    collapsed = [n for n, t in mask.items() if not bool(t.any())]
    zero_kept = [n for n in zero_scored if n not in collapsed]
    caused = _in_blocks(list(collapsed) + zero_kept, findings)
    cause = ""
    if caused:
        gating = [f for f in findings if any(n.startswith(f.block + ".") or not f.block
                                             for n in caused)]
        cause = (f" Cause: {_describe(gating)} multiply the output of the blocks holding "
                 f"{len(caused)} of these layers, so their scores are (near) zero at this "
                 f"initialisation. Fix: {fix_hint(model, gating)}.")
    if collapsed:
        state = connectivity(model, mask, input_shape, seed)
        zero = [n for n in collapsed if n in zero_scored]
        zero_note = (f" The scores of {len(zero)} of them were identically zero." if zero
                     else "")
        if zero_kept:  # one warning per call: the tie-broken layers are said here too
            zero_note += (f" {len(zero_kept)} other layer(s) scored identically zero keep "
                          f"weights chosen by the tie-break rule alone: {_names(zero_kept, 3)}.")
        if state.connected:
            warnings.warn(
                f"layer collapse: {len(collapsed)} layer(s) keep no weight: "
                f"{_names(collapsed)}. Only the branches through them are removed: the network "
                f"stays connected through other paths such as residual shortcuts ({state.how})."
                f"{zero_note}"
                f"{cause}", BranchCollapseWarning, stacklevel=stacklevel + 1)
        else:
            verdict = ("disconnect the network: " + state.how if state.connected is False
                       else "may disconnect the network (connectivity " + state.how + ")")
            warnings.warn(
                f"layer collapse: {len(collapsed)} layer(s) keep no weight and {verdict}: "
                f"{_names(collapsed)}.{zero_note}{cause}", LayerCollapseWarning,
                stacklevel=stacklevel + 1)
    elif zero_kept:
        warnings.warn(
            f"the scores of {len(zero_kept)} layer(s) are identically zero: "
            f"{_names(zero_kept)}; the weights kept there are chosen by the tie-break rule "
            f"(earlier position first), not by the pruner.{cause}", ZeroScoreWarning,
            stacklevel=stacklevel + 1)


def all_zero_message(pruner: str, round_index: int, rounds: int,
                     findings: Sequence[ScaleFinding]) -> str:
    """The error raised when every score of a round is zero (no ranking to prune by)."""
    where = f" in round {round_index + 1} of {rounds}" if rounds > 1 else ""
    causes = ("the loss has no gradient with respect to the weights (a constant loss, a single "
              "output class, all targets ignored), the data is degenerate, or the "
              "network is already disconnected")
    if findings:
        causes += (f"; the model also has {_describe(findings)}: "
                   f"{fix_hint_from_findings(findings)}")
    return (f"every score of pruner {pruner!r} is zero{where}, so the mask would be chosen by "
            f"the tie-break rule alone. Possible causes: {causes}")


def fix_hint_from_findings(findings: Sequence[ScaleFinding]) -> str:
    return ("score a copy with these scales set to 1 (paizoo.diagnostics.with_unit_scales)"
            if findings else "")


class OffTargetWarning(UserWarning):
    """A pruner was allowed (``allow_off_target=True``) to miss the requested kept count."""


def warn_off_target(pruner: str, kept: int, requested: int, total: int, why: str,
                    stacklevel: int = 2) -> None:
    """Say that a mask keeps ``kept`` of ``total`` weights instead of ``requested``, and why."""
    warnings.warn(
        f"{pruner}: the mask keeps {kept} of {total} weights (sparsity {1 - kept / total:.4g}) "
        f"instead of the requested {requested} (sparsity {1 - requested / total:.4g}): {why}",
        OffTargetWarning, stacklevel=stacklevel + 1)
