"""Keeping a mask enforced while training, and checking afterwards that it was.

Two equivalent strategies (identical kept weights step for step with any element-wise optimiser:
SGD with momentum and weight decay, Adam, AdamW):

* ``"hook"``: train the model in the ``torch.nn.utils.prune`` convention as it is: each forward
  pass recomputes ``weight = weight_orig * weight_mask`` and autograd multiplies the gradient of
  ``weight_orig`` by the mask.
* ``"project"``: remove the re-parametrisation for the duration of training (plain ``weight``
  parameters, zero at pruned positions) and, after every optimiser step, project the weights back
  onto the mask (``weight *= mask``, one fused ``_foreach_mul_`` over all layers). Gradients,
  momentum and weight decay may touch pruned positions inside a step, but the weights used by the
  next forward pass are exactly zero there, so the kept weights follow the same trajectory.

Either way the model handed back is in the ``torch.nn.utils.prune`` convention (``weight_orig``
+ ``weight_mask``) with ``weight_orig`` zeroed at pruned positions, and :func:`check_mask_enforced`
verifies that every pruned weight is exactly 0 and that the mask itself did not change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from ..errors import PaizooError
from ..masks import Mask
from ..reparam import apply_mask, is_masked, remove_masks

MaskMode = Literal["hook", "project"]
MASK_MODES: tuple[str, ...] = ("hook", "project")


class MaskViolationError(PaizooError, RuntimeError):
    """After training, a pruned weight is not exactly zero, or the mask changed."""


@dataclass(frozen=True)
class MaskCheck:
    """Outcome of :func:`check_mask_enforced` (all counts over the masked parameters)."""

    layers: int
    pruned: int
    kept: int
    nonzero_pruned: int

    def to_dict(self) -> dict[str, int]:
        return {"layers": self.layers, "pruned": self.pruned, "kept": self.kept,
                "nonzero_pruned": self.nonzero_pruned}


def _masked_modules(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """``{"<module>.<param>": (module, param)}`` for every prune re-parametrisation in ``model``."""
    found = {}
    for module_name, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                attr = hook._tensor_name
                found[f"{module_name}.{attr}" if module_name else attr] = (module, attr)
    return found


def _masked_uses(model: nn.Module, names: Iterable[str]) -> dict[str, list[tuple[nn.Module, str]]]:
    """``{mask entry: [(module, param), ...]}``: every re-parametrisation of each entry's tensor
    (a tied tensor is masked in every module using it, under one entry)."""
    modules = _masked_modules(model)
    wanted = set(names)
    entry = {id(getattr(m, f"{a}_orig")): n for n, (m, a) in modules.items() if n in wanted}
    out: dict[str, list[tuple[nn.Module, str]]] = {n: [] for n in names}
    for module, attr in modules.values():
        name = entry.get(id(getattr(module, f"{attr}_orig")))
        if name is not None:
            out[name].append((module, attr))
    return out


def check_mask_enforced(model: nn.Module, mask: Mask) -> MaskCheck:
    """Verify that ``model`` carries exactly ``mask`` and that every pruned weight is 0.

    Checks, for each masked parameter: ``*_orig`` is exactly zero where the mask is 0; and in
    every module that uses the tensor (all uses of a tied tensor, e.g. an LM head tied to its
    embedding), the ``*_mask`` buffer equals ``mask`` and the effective weight (the module
    attribute the prune hook last computed, which the forward pass uses) is exactly zero
    there. A module that uses the tensor without a mask re-parametrisation is a violation.

    Raises:
        MaskViolationError: naming the offending parameters and counts.
    """
    modules = _masked_modules(model)
    problems: list[str] = []
    missing = sorted(set(mask) - set(modules))
    if missing:
        problems.append(f"no mask re-parametrisation on {missing}")
    masked_uses: dict[int, list[str]] = {}  # id(x_orig) -> every "<module>.<x>" masking it
    for use, (module, attr) in modules.items():
        masked_uses.setdefault(id(getattr(module, f"{attr}_orig")), []).append(use)
    plain_uses: dict[int, list[str]] = {}  # id(tensor) -> "<module>.<x>" using it unmasked
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attr, p in module._parameters.items():
            if p is not None and not attr.endswith("_orig"):
                use = f"{module_name}.{attr}" if module_name else attr
                plain_uses.setdefault(id(p), []).append(use)
    pruned_total = kept_total = nonzero_total = 0
    for name, keep in mask.items():
        if name not in modules:
            continue
        module, attr = modules[name]
        orig = getattr(module, f"{attr}_orig")
        keep_dev = keep.to(orig.device)
        pruned = ~keep_dev
        with torch.no_grad():
            nonzero = int(torch.count_nonzero(orig.detach()[pruned]))
        if nonzero:
            problems.append(f"{name}: {nonzero} pruned weight value(s) are not exactly 0")
        unmasked = plain_uses.get(id(orig), [])
        if unmasked:
            problems.append(f"{name}: {', '.join(unmasked)} uses the same tensor without the "
                            "mask (paizoo.apply_mask masks every module that uses it)")
        for use in masked_uses[id(orig)]:
            user, user_attr = modules[use]
            buf = getattr(user, f"{user_attr}_mask")
            if not torch.equal(buf != 0, keep_dev):
                changed = int(((buf != 0) != keep_dev).sum())
                problems.append(f"{use}: the mask buffer differs from the mask in {changed} "
                                "entries")
            with torch.no_grad():
                effective = getattr(user, user_attr)  # as the prune hook last computed it
                stale = int(torch.count_nonzero(effective.detach()[pruned]))
            if stale:
                problems.append(f"{use}: {stale} pruned weight value(s) are not exactly 0")
            nonzero += stale
        pruned_total += int(pruned.sum())
        kept_total += int(keep_dev.sum())
        nonzero_total += nonzero
    if problems:
        raise MaskViolationError("the mask was not enforced during training:\n  "
                                 + "\n  ".join(problems))
    return MaskCheck(layers=len(mask), pruned=pruned_total, kept=kept_total,
                     nonzero_pruned=nonzero_total)


class MaskEnforcer:
    """Enforce the mask a model carries for the duration of training.

    Usage (the optimiser must be built *after* the enforcer, which may replace parameters)::

        enforcer = MaskEnforcer(model, "project")
        optimizer = make_optimizer(model.parameters())
        for x, y in batches:
            ...; optimizer.step(); enforcer.after_step()
        check = enforcer.finish()     # back to weight_orig + weight_mask, verified

    A model without masks (dense training) is left alone: every call is a no-op and
    :meth:`finish` returns ``None``.
    """

    def __init__(self, model: nn.Module, mode: MaskMode = "project") -> None:
        if mode not in MASK_MODES:
            raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
        self.model = model
        self.mode: MaskMode = mode
        self.mask: Mask | None = Mask.from_model(model) if is_masked(model) else None
        self._params: list[torch.Tensor] = []
        self._masks: list[torch.Tensor] = []
        if self.mask is not None and mode == "project":
            remove_masks(model)
            params = {n: p for n, p in model.named_parameters()}
            for name, keep in self.mask.items():
                p = params[name]
                self._params.append(p)
                self._masks.append(keep.to(device=p.device, dtype=p.dtype))
            self.after_step()  # weights are exactly zero at pruned positions from the start

    @property
    def active(self) -> bool:
        return self.mask is not None

    def to_memory_format(self, memory_format: torch.memory_format) -> None:
        """Convert the model's 4-D parameters and buffers (``Module.to``; the parameter objects
        are kept, so optimisers built later see them) and the projection masks to
        ``memory_format``. Call it after construction: in project mode the constructor replaces
        the masked parameters, and a product of tensors whose channel dimension has size 1
        loses the channels-last strides (and with them oneDNN's channels-last kernels)."""
        self.model.to(memory_format=memory_format)
        self._masks = [m.contiguous(memory_format=memory_format) if m.dim() == 4 else m
                       for m in self._masks]

    @torch.no_grad()
    def after_step(self) -> None:
        """Project the weights onto the mask (project mode; nothing to do in hook mode)."""
        if self._params:
            torch._foreach_mul_(self._params, self._masks)

    @torch.no_grad()
    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Clip the model's gradient to global L2 norm ``max_norm`` (call after ``backward``,
        before the optimiser step); returns the norm before clipping.

        The norm is that of the sparse network's gradient: in project mode the pruned weights'
        gradients (which the projection discards anyway) are zeroed first; in hook mode they
        are already 0 (the gradient reaches ``*_orig`` through the mask)."""
        if self._params:
            grads = [p.grad for p in self._params if p.grad is not None]
            masks = [m for p, m in zip(self._params, self._masks, strict=True)
                     if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, masks)
        params = [p for p in self.model.parameters() if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    @torch.no_grad()
    def clear_pruned(self) -> None:
        """Set every pruned weight to exactly 0 by assignment, not by multiplying with the mask
        (``NaN * 0`` is NaN): for a run whose weights became non-finite, after which
        :meth:`finish` hands the model back with its pruned weights still exactly 0."""
        if self.mask is None:
            return
        if self.mode == "project":
            for p, keep in zip(self._params, self._masks, strict=True):
                p.masked_fill_(keep == 0, 0.0)
            return
        for name, uses in _masked_uses(self.model, self.mask).items():
            for module, attr in uses:
                orig = getattr(module, f"{attr}_orig")
                orig.masked_fill_(~self.mask[name].to(orig.device), 0.0)
                setattr(module, attr, orig * getattr(module, f"{attr}_mask"))

    @torch.no_grad()
    def finish(self) -> MaskCheck | None:
        """Return the model to the prune convention with pruned ``*_orig`` entries zeroed.

        Before converting, the weights training actually used are checked: in project mode the
        plain parameters, in hook mode the ``weight`` each module's last forward pass computed.
        Then :func:`check_mask_enforced` verifies the converted model.

        Raises:
            MaskViolationError: a pruned weight is not exactly zero.
        """
        if self.mask is None:
            return None
        problems = []
        if self.mode == "project":
            params = dict(self.model.named_parameters())
            for name, keep in self.mask.items():
                nonzero = int(torch.count_nonzero(params[name][~keep.to(params[name].device)]))
                if nonzero:
                    problems.append(f"{name}: {nonzero} pruned weight(s) are not 0")
        else:
            for name, uses in _masked_uses(self.model, self.mask).items():
                for module, attr in uses:
                    used = getattr(module, attr)
                    nonzero = int(torch.count_nonzero(used[~self.mask[name].to(used.device)]))
                    if nonzero:
                        problems.append(f"{name}: {nonzero} pruned weight(s) used by the "
                                        "forward pass are not 0")
        if problems:
            raise MaskViolationError("the mask was not enforced during training:\n  "
                                     + "\n  ".join(problems))
        if self.mode == "project":
            apply_mask(self.model, self.mask)
            self._params, self._masks = [], []
        for module, attr in _masked_modules(self.model).values():
            orig = getattr(module, f"{attr}_orig")
            orig.mul_(getattr(module, f"{attr}_mask"))
            setattr(module, attr, orig * getattr(module, f"{attr}_mask"))
        return check_mask_enforced(self.model, self.mask)
