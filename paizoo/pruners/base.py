"""The pruner interface: scores in, exact masks out.

A pruner only computes per-parameter **scores** (higher = keep) in :meth:`Pruner.score`. The shared
code here turns scores into a :class:`~paizoo.masks.Mask` with exact kept counts (one global top-k,
or one per layer), optionally over several rounds on an exponential or linear density schedule,
re-scoring the masked network each round (as SynFlow does, Tanaka et al. 2020).

Scoring never touches the caller's model: it runs on a deep copy whose prunable weights are
reset at the start of every round to ``theta_0 * mask`` (the initial weights, masked). All random
draws happen under ``torch.random.fork_rng`` seeded with ``seed``, so the same seed gives the same
mask bit for bit and the caller's global RNG state is left untouched.
"""

from __future__ import annotations

import copy
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import diagnostics
from ..batches import Batch, as_batches, check_target_range
from ..errors import (
    MissingDataError,
    ModelConfigError,
    PrunerOptionError,
    ScoreError,
    SparsityError,
)
from ..masks import Mask
from ..params import Cover, Patterns, coverage_of, prunable_parameters
from ..progress import Progress, round_progress
from ..reparam import remove_masks, weight_norm_dims
from ..sparsity import (
    Schedule,
    check_keep_one,
    check_scores,
    density_schedule,
    kept_count,
    select_scored,
    slice_counts,
)

Scope = Literal["global", "layer"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class PruneContext:
    """Everything a pruner's :meth:`Pruner.score` may use in one round.

    Attributes:
        model: the working copy (not the caller's model); its prunable weights hold
            ``initial * mask`` when ``score`` is called.
        params: the prunable parameters of ``model`` by name (``requires_grad=True``; all other
            parameters of the copy have ``requires_grad=False``).
        initial: dense initial weights theta_0 by name (detached copies).
        mask: the current mask (all ones in the first round).
        batches: the data as ``(inputs, targets)`` pairs on the CPU/caller device, or ``None``.
        input_shape: shape of one input sample, without batch dimension, or ``None``.
        generator: a seeded CPU ``torch.Generator`` for the pruner's own random draws.
        device: the device of the model's parameters.
        round: 0-based index of this round; ``num_rounds`` rounds in all.
        density: the density this round's mask will have.
        loss_fn: ``loss_fn(logits, targets)``; cross-entropy by default.
        token_input: whether the model takes token ids (see :mod:`paizoo.pruners._tokens`), as
            the input probe before :meth:`Pruner.prepare` found it; ``None`` when the probe fed
            the data's inputs (use :meth:`takes_token_ids`).
    """

    model: nn.Module
    params: dict[str, nn.Parameter]
    initial: dict[str, torch.Tensor]
    mask: Mask
    batches: list[Batch] | None
    input_shape: tuple[int, ...] | None
    generator: torch.Generator
    device: torch.device
    round: int = 0
    num_rounds: int = 1
    density: float = 1.0
    loss_fn: LossFn = field(default=F.cross_entropy)
    token_input: bool | None = None

    def takes_token_ids(self, model: nn.Module | None = None,
                        dtype: torch.dtype = torch.float32) -> bool:
        """Whether the model is a token-input model: the input probe's answer, or when it did
        not tell (data given), one forward of ``model`` (default :attr:`model`) on zeros of
        ``dtype`` (:func:`paizoo.pruners._tokens.takes_token_ids`)."""
        if self.token_input is not None:
            return self.token_input
        from ._tokens import takes_token_ids

        assert self.input_shape is not None
        return takes_token_ids(model if model is not None else self.model, self.input_shape,
                               dtype, self.device)

    def device_batches(self) -> list[Batch]:
        """The batches moved to :attr:`device` (raises if the pruner was given no data)."""
        if self.batches is None:
            raise MissingDataError("this pruner needs data")
        return [(x.to(self.device), y.to(self.device)) for x, y in self.batches]


class Pruner(ABC):
    """Base class of all pruners; subclasses implement :meth:`score` and register themselves.

    Args:
        scope: ``"global"`` (one top-k over all layers) or ``"layer"`` (the same density in
            every layer). Defaults to the class's ``default_scope``.
        rounds: number of prune-rescore rounds (class default ``default_rounds``).
        schedule: density schedule over rounds, ``"exponential"`` or ``"linear"``.
    """

    name: ClassVar[str] = ""
    #: needs ``data=`` (``(inputs, targets)`` batches)
    requires_data: ClassVar[bool] = False
    #: needs ``input_shape=`` (or data from which to read it)
    requires_input_shape: ClassVar[bool] = False
    default_scope: ClassVar[Scope] = "global"
    default_rounds: ClassVar[int] = 1
    #: a weight pruned in one round stays pruned (False: FORCE-style, weights may come back)
    monotone: ClassVar[bool] = True

    def __init__(self, *, scope: Scope | None = None, rounds: int | None = None,
                 schedule: Schedule = "exponential") -> None:
        self.scope: Scope = scope or self.default_scope
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        self.rounds = int(rounds if rounds is not None else self.default_rounds)
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        if schedule not in ("exponential", "linear"):
            raise ValueError(f"schedule must be 'exponential' or 'linear', got {schedule!r}")
        self.schedule: Schedule = schedule

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"

    def config(self) -> dict[str, Any]:
        """The pruner's configuration (public attributes), for logs and result keys."""
        return {k: v for k, v in sorted(vars(self).items()) if not k.startswith("_")}

    # ---- to implement ------------------------------------------------------------------------
    @abstractmethod
    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        """Return ``{name: scores}`` (shape of each parameter; higher = keep) for ``ctx.params``."""

    def budgets(self, shapes: dict[str, torch.Size], density: float) -> int | dict[str, int]:
        """How many weights to keep: one global count, or a count per parameter.

        The default follows :attr:`scope`; pruners with their own layer-wise allocation
        (ER/ERK) override this.
        """
        sizes = {n: int(torch.Size(s).numel()) for n, s in shapes.items()}
        if self.scope == "global":
            return kept_count(density, sum(sizes.values()))
        return {n: kept_count(density, size) for n, size in sizes.items()}

    def prepare(self, ctx: PruneContext) -> None:  # noqa: B027 - optional hook
        """Called once on the working copy before the first round (e.g. to set train/eval mode)."""

    # ---- shared machinery --------------------------------------------------------------------
    def compute_mask(
        self,
        model: nn.Module,
        density: float,
        *,
        data: object = None,
        input_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        include: Patterns = None,
        exclude: Patterns = None,
        loss_fn: LossFn | None = None,
        progress: Progress = None,
        cover: Cover = None,
    ) -> Mask:
        """Score ``model`` and return the mask at ``density``; ``model`` is left unchanged.

        ``include``/``exclude``/``cover`` choose the prunable parameters (see
        :mod:`paizoo.params`); a :class:`~paizoo.masks.CoverageWarning` names the weights of
        the model they leave dense (also in ``mask.report()``). ``progress``: see
        :mod:`paizoo.progress` (a bar on a terminal, a line every 10 s with an ETA elsewhere,
        for multi-round pruners). Every round keeps a weight in each slice of a weight-normed
        weight's ``v`` (see :func:`paizoo.sparsity.select`, ``keep_one``), so the mask applies.
        ``data`` is read under ``seed`` as well: a shuffling ``DataLoader`` yields the same
        batches for the same seed, and the global RNG state is left as it was.
        """
        if not 0.0 < density <= 1.0:
            raise SparsityError(f"density must be in (0, 1], got {density}")
        seed = _as_seed(seed)
        # a shuffling DataLoader draws its order from the global RNG: iterate it under ``seed``
        # too, so that the same seed reads the same batches and the caller's RNG is untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            batches = self._check_data(data)
        if input_shape is None and batches is not None:
            input_shape = tuple(batches[0][0].shape[1:])
        if self.requires_input_shape and input_shape is None:
            raise MissingDataError(
                f"pruner {self.name!r} needs input_shape= (one sample's shape without the batch "
                "dimension, e.g. (3, 32, 32)) or data to read it from")
        check_input_shape(input_shape)
        if (self.requires_input_shape and batches is not None  # it feeds input_shape inputs
                and tuple(input_shape) != tuple(batches[0][0].shape[1:])):
            raise MissingDataError(
                f"input_shape={tuple(input_shape)} but the data's inputs have shape "
                f"{tuple(batches[0][0].shape[1:])} per sample: pruner {self.name!r} feeds "
                "inputs of input_shape, and the model was checked on the data's; leave "
                "input_shape out (it is read from the data) or make them agree")
        meta = [n for n, p in model.named_parameters() if p.is_meta]
        if meta:
            raise ModelConfigError(
                f"{type(model).__name__} has parameters on the meta device (shapes, no values), "
                f"e.g. {meta[0]!r}: pruning needs the initialised weights; build the model on a "
                "real device (or model.to_empty(device='cpu') and initialise it)")

        original = prunable_parameters(model, include, exclude, cover)
        start = self._existing_mask(model, original)
        work = _working_copy(model)
        if start is not None:
            remove_masks(work)
        params = prunable_parameters(work, include, exclude, cover)
        for p in work.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        shapes = {n: p.shape for n, p in params.items()}
        mask = start if start is not None else Mask(
            {n: torch.ones(s, dtype=torch.bool, device=params[n].device)
             for n, s in shapes.items()})
        first = self.budgets(shapes, density)
        total_kept = first if isinstance(first, int) else sum(first.values())
        if total_kept == 0:
            raise SparsityError(
                f"density {density:.3g} keeps 0 of {sum(p.numel() for p in params.values())} "
                "prunable weights; use a lower sparsity or compression, or a higher density")
        # weight norm divides each slice of v by its norm: every round keeps a weight in each
        keep_one = weight_norm_dims(work, params)
        check_keep_one(first, slice_counts(shapes, keep_one))  # up front, before scoring
        if start is not None and isinstance(first, dict):
            over = [n for n, k in first.items() if k > int(start[n].sum())]
            if over:
                raise SparsityError(
                    f"the model already carries a mask, and the per-layer budgets at density "
                    f"{density:.3g} exceed what it keeps in {over}; use scope='global', a higher "
                    "sparsity, or start from the dense model (paizoo.remove_masks)")
        if start is not None and total_kept > start.num_kept:
            raise SparsityError(
                f"the model already carries a mask keeping {start.num_kept} weights; density "
                f"{density:.3g} would keep {total_kept}. Ask for a higher sparsity, or remove the "
                "masks (paizoo.remove_masks) and start from the dense model")

        device = next(iter(params.values())).device
        findings = diagnostics.find_near_zero_scales(work)  # before scoring; named in warnings
        zero_scored: list[str] = []
        ctx = PruneContext(
            model=work, params=params,
            initial={n: p.detach().clone() for n, p in params.items()},
            mask=mask, batches=batches,
            input_shape=tuple(input_shape) if input_shape is not None else None,
            generator=torch.Generator().manual_seed(seed), device=device,
            num_rounds=self.rounds, loss_fn=loss_fn or F.cross_entropy,
        )
        cuda_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices), torch.enable_grad():  # even in no_grad
            if self.requires_data or self.requires_input_shape:  # this pruner feeds inputs
                ctx.token_input = probe_inputs(work, batches, ctx.input_shape, device)
            torch.manual_seed(seed)
            self.prepare(ctx)
            if start is None:
                schedule = density_schedule(density, self.rounds, self.schedule)
            else:  # continue from the density the model already has
                relative = density_schedule(density / start.density, self.rounds, self.schedule)
                schedule = [start.density * d for d in relative[:-1]] + [density]
            # the loop works on plain {name: bool tensor} dicts it owns (a Mask hands out
            # copies); ctx.mask is the Mask view of the same flags for the pruner
            flags = {n: mask[n] for n in params}
            fixed = None if start is None else {n: start[n] for n in params}
            for r, round_density in enumerate(round_progress(schedule, f"{self.name} rounds",
                                                             progress)):
                ctx.round, ctx.density, ctx.mask = r, round_density, mask
                with torch.no_grad():
                    for n, p in params.items():
                        torch.mul(ctx.initial[n], flags[n], out=p)  # no temporary
                scores = self.score(ctx)
                check_scores(scores, shapes)  # select_scored() checks for NaN
                scores = {n: scores[n].to(device) for n in params}
                if self.monotone and (r > 0 or start is not None):
                    eligible = flags
                else:  # non-monotone pruners may revive weights of earlier rounds, never ones
                    eligible = fixed  # the model had already pruned before pruning started
                budget = self.budgets(shapes, round_density)
                selection = select_scored(scores, budget, eligible, keep_one=keep_one)
                if len(selection.zero_layers) == len(scores):
                    raise ScoreError(diagnostics.all_zero_message(self.name, r, self.rounds,
                                                                  findings))
                if r == 0:
                    zero_scored = selection.zero_layers
                flags = selection.masks  # fresh tensors the loop only reads
                mask = Mask._adopt(flags)
        mask = Mask({n: t.to(original[n].device) for n, t in mask.items()},
                    coverage_of(model, mask, exclude))
        diagnostics.warn_after_pruning(model, mask, input_shape=ctx.input_shape,
                                       zero_scored=zero_scored, findings=findings, seed=seed,
                                       stacklevel=3)
        mask.warn_if_uncovered(stacklevel=3)
        return mask

    def _check_data(self, data: object) -> list[Batch] | None:
        if data is None:
            if self.requires_data:
                raise MissingDataError(
                    f"pruner {self.name!r} is data-driven and needs data=: a DataLoader, a list "
                    "of (inputs, targets) batches, or one (inputs, targets) pair "
                    "(paizoo.data.pruning_batches builds them from a dataset)")
            return None
        return as_batches(data)

    @staticmethod
    def _existing_mask(model: nn.Module, params: dict[str, nn.Parameter]) -> Mask | None:
        present = {}
        for name in params:
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            buf = getattr(module, f"{attr}_mask", None)
            if buf is not None:
                present[name] = buf != 0
        if not present:
            return None
        for name, p in params.items():
            present.setdefault(name, torch.ones_like(p, dtype=torch.bool))
        return Mask({n: present[n] for n in params})


def _as_seed(seed: object) -> int:
    """``seed`` as a Python int (NumPy integers included); anything else is refused."""
    try:
        if isinstance(seed, bool):
            raise TypeError
        return operator.index(seed)  # type: ignore[arg-type]
    except TypeError:
        raise PrunerOptionError(f"seed must be an integer, e.g. seed=0; got {seed!r} "
                                f"({type(seed).__name__})") from None


def check_input_shape(input_shape: tuple[int, ...] | None) -> None:
    """One sample's shape: a non-empty sequence of positive integers (no batch dimension)."""
    if input_shape is None:
        return
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Iterable):
        shape: object = input_shape  # e.g. 8 for (8,), or "3,32,32"
        positive = False
    else:
        shape = tuple(input_shape)
        try:
            positive = all(not isinstance(v, bool) and operator.index(v) > 0 for v in shape)
        except TypeError:
            positive = False
    if not shape or not positive:
        raise MissingDataError(
            f"input_shape={shape!r} must be one sample's shape without the batch dimension: "
            "a tuple of positive integers, e.g. (3, 32, 32), or (8,) for 8 features")


@torch.no_grad()
def probe_inputs(model: nn.Module, batches: list[Batch] | None,
                 input_shape: tuple[int, ...] | None, device: torch.device) -> bool | None:
    """Run one sample through ``model`` (eval mode, restored after) and check what pruning will
    feed it: the data's inputs (or zeros of ``input_shape``) must fit the model, and the data's
    integer targets must lie in ``[0, C)`` for C output logits. Raises
    :class:`MissingDataError` saying what does not fit, instead of the raw error of a layer.

    Returns whether the model takes token ids (it has an embedding and refuses the float zeros,
    the rule of :func:`paizoo.pruners._tokens.takes_token_ids`; it must then take placeholder
    ids), or ``None`` when the data's inputs were fed (or nothing was)."""
    token_input: bool | None = None
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.get_default_dtype())
    if batches is not None:
        x = batches[0][0][:1]
        what = f"the data's inputs of shape {tuple(x.shape[1:])}"
    elif input_shape is not None:  # in the model's dtype, as the pruners feed it
        x = torch.zeros(1, *input_shape, dtype=dtype)
        what = f"inputs of input_shape={tuple(input_shape)}"
        token_input = False
    else:
        return None
    was_training = model.training
    model.eval()
    try:
        try:
            out = model(x.to(device))
        except (RuntimeError, TypeError, ValueError, IndexError):
            from ._tokens import embedding_names, token_placeholder

            if batches is not None or not embedding_names(model):
                raise
            # a token-input model: the data-free pruners feed it token ids (see _tokens)
            token_input = True
            out = model(token_placeholder(model, 1, tuple(input_shape), device))
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if x.is_floating_point() and x.dtype != dtype:
            raise MissingDataError(
                f"{type(model).__name__} cannot take {what}: {' '.join(str(exc).split())}. "
                f"The inputs are {x.dtype} but the model's parameters are {dtype}: cast the "
                f"data (inputs.to({dtype})) or the model (model.to({x.dtype}))") from exc
        hint = ""
        if len(x.shape) > 2 and x.shape[1] == 1:
            hint = (f"; if {tuple(x.shape[1:])} includes a batch dimension, drop it: "
                    f"{tuple(x.shape[2:])}")
        raise MissingDataError(
            f"{type(model).__name__} cannot take {what}: {' '.join(str(exc).split())}. The "
            f"inputs must be one sample's shape without the batch dimension, as the model "
            f"expects (channels, height, width for images){hint}") from exc
    finally:
        model.train(was_training)
    if batches is None or not isinstance(out, torch.Tensor) or out.dim() != 2:
        return token_input
    for _, y in batches:
        if not y.dtype.is_floating_point and not y.dtype.is_complex:
            check_target_range(y, int(out.shape[1]))
    return token_input


def _working_copy(model: nn.Module) -> nn.Module:
    """Deep copy of ``model``.

    Tensors stored as plain module attributes that are not graph leaves (the ``weight = weight_orig
    * weight_mask`` of a masked module, computed by the forward pre-hook) refuse ``deepcopy``;
    they are copied detached (the copy's hooks recompute them on the next forward).
    """
    memo: dict[int, object] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    try:
        return copy.deepcopy(model, memo)
    except Exception as exc:  # pragma: no cover - depends on exotic user modules
        raise TypeError(
            f"cannot deep-copy {type(model).__name__} to score it without touching it: {exc}. "
            "paizoo never modifies the model it prunes and needs a copy.") from exc
