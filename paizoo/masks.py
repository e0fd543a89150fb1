"""The :class:`Mask` type: which prunable weights are kept.

A ``Mask`` maps parameter names (as in ``model.named_parameters()``; ``x.weight`` also when the
model carries ``x.weight_orig`` after :meth:`Mask.apply`) to boolean tensors of the parameter's
shape, ``True`` = kept. It is read-only: it copies the tensors it is built from, ``mask[name]``
returns a copy, and operations return new masks, so nothing done to a tensor taken out of a
mask (``mask[name].fill_(True)``) or put into it changes the mask.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import MaskFileError, MaskMismatchError
from .params import (
    Cover,
    Coverage,
    Patterns,
    parameter_table,
    prunable_parameters,
    select_parameters,
)


class LayerCollapseWarning(UserWarning):
    """Some layers of a mask keep no weight at all, and no input-output path is left (or it
    could not be checked); its subclass :class:`paizoo.diagnostics.BranchCollapseWarning`
    says that the network stays connected through other paths (residual shortcuts)."""


class CoverageWarning(UserWarning):
    """The model has parameters (attention, recurrent, embedding or other weights) that the
    current coverage leaves dense; the message says which and what share of the model."""


@dataclass(frozen=True)
class LayerDensity:
    """Kept/total counts of one masked parameter."""

    name: str
    shape: tuple[int, ...]
    kept: int
    total: int

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 0.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density


class Mask(Mapping[str, torch.Tensor]):
    """Boolean keep-masks for the prunable parameters of a model.

    Example::

        mask = paizoo.prune(model, "snip", sparsity=0.9, data=loader)
        print(mask.report())
        mask.save("mask.safetensors")
        mask.apply(model)         # torch.nn.utils.prune convention: weight_orig + weight_mask
    """

    __slots__ = ("_coverage", "_tensors")

    def __init__(self, tensors: Mapping[str, torch.Tensor], coverage: Coverage | None = None):
        converted: dict[str, torch.Tensor] = {}
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"mask entry {name!r} is a {type(t).__name__}, expected a tensor")
            if t.dtype != torch.bool:
                if t.is_floating_point() and not torch.all((t == 0) | (t == 1)):
                    raise ValueError(f"mask entry {name!r} has values other than 0 and 1")
                t = t != 0
            else:
                t = t.clone()  # the caller keeps its tensor; the mask keeps its own copy
            converted[name] = t.detach()
        self._tensors = converted
        self._coverage = coverage

    @classmethod
    def _adopt(cls, tensors: Mapping[str, torch.Tensor]) -> Mask:
        """A mask that takes ownership of ``tensors`` (detached bool tensors nobody else
        changes) without copying them: for pruning's round loop, which makes a new one per
        round."""
        mask = cls.__new__(cls)
        mask._tensors = dict(tensors)
        mask._coverage = None
        return mask

    @property
    def coverage(self) -> Coverage | None:
        """The model's parameters this mask leaves dense although they could be pruned
        (attention, recurrent, embedding, other weights), when known (masks made by a pruner)."""
        return self._coverage

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def ones(cls, model: nn.Module, include: Patterns = None, exclude: Patterns = None,
             cover: Cover = None) -> Mask:
        """The dense mask (all kept) over the prunable parameters of ``model``."""
        params = prunable_parameters(model, include, exclude, cover)
        return cls({n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()})

    @classmethod
    def from_model(cls, model: nn.Module) -> Mask:
        """Read the ``weight_mask`` buffers of a model masked by :meth:`apply` or torch prune.

        A tied parameter (masked in every module that uses it) gives one entry, under the name
        of its first use.
        """
        tensors = {}
        seen: set[int] = set()
        for module_name, module in model.named_modules(remove_duplicate=False):
            for buffer_name, buf in module.named_buffers(recurse=False):
                param = buffer_name[: -len("_mask")]
                # only pruning masks: ``x_mask`` next to a parameter ``x_orig`` (not, e.g., the
                # ``attn_mask`` buffers of Swin-style attention)
                if buffer_name.endswith("_mask") and f"{param}_orig" in module._parameters:
                    orig = module._parameters[f"{param}_orig"]
                    if id(orig) in seen:
                        continue
                    seen.add(id(orig))
                    full = f"{module_name}.{param}" if module_name else param
                    tensors[full] = buf != 0
        if not tensors:
            raise MaskMismatchError(
                f"{type(model).__name__} carries no '*_mask' buffers; apply a mask first"
            )
        return cls(tensors)

    # ---- mapping protocol ------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        """A copy of the mask of ``name`` (changing it does not change the mask)."""
        return self._tensors[name].clone()

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return (f"Mask({len(self)} tensors, kept {self.num_kept}/{self.num_total}, "
                f"density {self.density:.4g})")

    def __eq__(self, other: object) -> bool:
        """Same names, and for each name the same shape and kept set; the order of the
        entries does not matter (as for ``dict``), nor the device or dtype of ``other``'s
        tensors (nonzero = kept)."""
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(self) != len(other) or set(self) != set(other):
            return False
        own = self._tensors  # not self[n]: that hands out a copy
        return all(
            isinstance(other[n], torch.Tensor) and own[n].shape == other[n].shape
            and torch.equal(own[n].cpu(), other[n].cpu().bool())
            for n in self
        )

    __hash__ = None  # type: ignore[assignment]

    # ---- statistics -------------------------------------------------------------------------
    @property
    def num_kept(self) -> int:
        return sum(int(t.sum()) for t in self._tensors.values())

    @property
    def num_total(self) -> int:
        return sum(t.numel() for t in self._tensors.values())

    @property
    def density(self) -> float:
        """Global fraction of kept weights over all masked parameters."""
        total = self.num_total
        return self.num_kept / total if total else 0.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def layers(self) -> list[LayerDensity]:
        """Per-parameter kept/total counts, in mask order."""
        return [LayerDensity(n, tuple(t.shape), int(t.sum()), t.numel())
                for n, t in self._tensors.items()]

    def layer_densities(self) -> dict[str, float]:
        return {layer.name: layer.density for layer in self.layers()}

    def collapsed_layers(self) -> list[str]:
        """Names of parameters with no kept weight ("layer collapse", Tanaka et al. 2020)."""
        return [layer.name for layer in self.layers() if layer.kept == 0]

    def warn_if_collapsed(self, stacklevel: int = 2) -> None:
        collapsed = self.collapsed_layers()
        if collapsed:
            warnings.warn(
                f"layer collapse: {len(collapsed)} layer(s) keep no weight and disconnect the "
                f"network: {', '.join(collapsed)}", LayerCollapseWarning, stacklevel=stacklevel + 1)

    def warn_if_uncovered(self, stacklevel: int = 2) -> None:
        """Warn (:class:`CoverageWarning`) when the model has weights this mask leaves dense."""
        summary = self._coverage.summary() if self._coverage is not None else ""
        if summary:
            warnings.warn(summary, CoverageWarning, stacklevel=stacklevel + 1)

    def report(self) -> str:
        """A plain-text table of per-layer and global density, flagging collapsed layers and
        naming the model's weights the mask leaves dense (see :attr:`coverage`)."""
        rows = self.layers()
        width = max([len("layer"), *(len(r.name) for r in rows)])
        lines = [f"{'layer':<{width}}  {'shape':<20} {'kept':>12} {'total':>12} {'density':>9}"]
        lines.append("-" * len(lines[0]))
        for r in rows:
            flag = "  COLLAPSED" if r.kept == 0 else ""
            lines.append(f"{r.name:<{width}}  {'x'.join(map(str, r.shape)):<20} {r.kept:>12,} "
                         f"{r.total:>12,} {r.density:>9.4%}{flag}")
        lines.append("-" * len(lines[0]))
        lines.append(f"{'global':<{width}}  {'':<20} {self.num_kept:>12,} {self.num_total:>12,} "
                     f"{self.density:>9.4%}")
        collapsed = self.collapsed_layers()
        if collapsed:
            lines.append(f"layer collapse in {len(collapsed)} layer(s): {', '.join(collapsed)}")
        summary = self._coverage.summary() if self._coverage is not None else ""
        if summary:
            lines.append(summary)
        return "\n".join(lines)

    # ---- comparisons ------------------------------------------------------------------------
    def _check_same_layout(self, other: Mapping[str, torch.Tensor]) -> None:
        if set(self) != set(other):
            raise MaskMismatchError(
                f"masks cover different parameters: only in first {sorted(set(self) - set(other))},"
                f" only in second {sorted(set(other) - set(self))}")
        own = self._tensors
        for n in self:
            if own[n].shape != other[n].shape:
                raise MaskMismatchError(
                    f"{n!r}: shape {tuple(own[n].shape)} vs {tuple(other[n].shape)}")

    def iou(self, other: Mapping[str, torch.Tensor]) -> float:
        """Intersection over union of the kept sets (1.0 for two empty masks)."""
        self._check_same_layout(other)
        own = self._tensors
        inter = sum(int((own[n] & other[n].to(own[n].device).bool()).sum()) for n in self)
        union = sum(int((own[n] | other[n].to(own[n].device).bool()).sum()) for n in self)
        return inter / union if union else 1.0

    def __and__(self, other: Mapping[str, torch.Tensor]) -> Mask:
        self._check_same_layout(other)
        own = self._tensors
        return Mask({n: own[n] & other[n].bool() for n in self}, self._coverage)

    def __or__(self, other: Mapping[str, torch.Tensor]) -> Mask:
        self._check_same_layout(other)
        own = self._tensors
        return Mask({n: own[n] | other[n].bool() for n in self}, self._coverage)

    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: t.to(device) for n, t in self._tensors.items()}, self._coverage)

    def cpu(self) -> Mask:
        return self.to("cpu")

    # ---- model compatibility ----------------------------------------------------------------
    def check_compatible(self, model: nn.Module) -> None:
        """Raise :class:`MaskMismatchError` listing every name/shape that does not fit ``model``.

        Names are those of ``named_parameters()`` (``x`` for a masked ``x_orig``), and for a tied
        parameter the name of any of its uses (one entry per tensor: two names of one tied
        tensor are a mismatch).
        """
        params = {n: info.param for info in parameter_table(model).values()
                  for n in (info.name, *info.aliases)}
        problems = []
        named: dict[int, str] = {}  # id(tensor) -> the mask entry that names it
        for name, t in self._tensors.items():
            if name not in params:
                problems.append(f"  {name}: no such parameter in {type(model).__name__}")
            elif tuple(params[name].shape) != tuple(t.shape):
                problems.append(f"  {name}: mask shape {tuple(t.shape)} but parameter shape "
                                f"{tuple(params[name].shape)}")
            elif id(params[name]) in named:
                problems.append(f"  {name}: the same tensor as {named[id(params[name])]!r} "
                                "(tied weights: one mask entry per tensor, which masks every "
                                "use)")
            else:
                named[id(params[name])] = name
        if problems:
            raise MaskMismatchError(
                f"the mask does not fit {type(model).__name__} ({len(problems)} problem(s)):\n"
                + "\n".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
                + "\nWas the mask made for another architecture, or with other num_classes/"
                  "input channels?")

    def apply(self, model: nn.Module) -> nn.Module:
        """Apply in place (``torch.nn.utils.prune`` convention); see :func:`paizoo.apply_mask`."""
        from .reparam import apply_mask

        return apply_mask(model, self)

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, metadata: Mapping[str, object] | None = None) -> Path:
        """Write the mask as a safetensors file (uint8 tensors, names as keys); missing parent
        folders are created (the CLI checks its ``--out`` paths before calling this).

        ``metadata`` (JSON-serialisable) is stored in the file header under ``paizoo``.
        Returns the path written.
        """
        from safetensors.torch import save_file

        path = Path(path)
        meta = {"format": "paizoo-mask", "version": "1",
                "paizoo": json.dumps(dict(metadata or {}), default=str, sort_keys=True),
                "names": json.dumps(list(self._tensors))}  # safetensors sorts the keys
        tensors = {n: t.to(torch.uint8).contiguous().cpu() for n, t in self._tensors.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(f"cannot write the mask to {path}: it is a folder")
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # nothing left behind when writing failed
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module | None = None, *,
             strict: bool = True) -> Mask:
        """Read a mask saved by :meth:`save`.

        With ``model``, every name and shape is checked against it, and (``strict=True``, the
        default) the file must cover every prunable layer of ``model``: a layer it lacks would
        stay dense on :meth:`apply`. ``strict=False`` accepts such a partial mask (e.g. one
        made with ``exclude=``).

        Raises:
            FileNotFoundError: no file at ``path``.
            paizoo.errors.MaskFileError: the file is not a readable paizoo mask (corrupt,
                truncated, another format, values other than 0/1), or holds no tensor.
            paizoo.MaskMismatchError: the mask does not fit ``model``.
        """
        path = Path(path)
        tensors, meta = _read_safetensors(path, tensors=True)
        if not tensors:
            raise MaskFileError(f"the mask file {path} holds no tensor")
        try:
            order = json.loads(meta.get("names", "[]"))
        except ValueError:
            order = []
        if isinstance(order, list) and sorted(order) == sorted(tensors):
            tensors = {n: tensors[n] for n in order}  # the mask's own order (safetensors sorts)
        for name, t in tensors.items():  # in memory an integer tensor's nonzeros are kept; a
            # file holds 0/1 (uint8) or bool, and other integers are scores or counts, not a mask
            if t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all()):
                raise MaskFileError(
                    f"{path} is not a paizoo mask: entry {name!r} ({t.dtype}) has values other "
                    "than 0 and 1 (scores or counts?); a mask file holds 0/1 per weight, as "
                    "Mask.save and `paizoo prune --out` write it")
        try:
            mask = cls(tensors)
        except (TypeError, ValueError) as exc:
            raise MaskFileError(f"{path} is not a paizoo mask: {exc}") from exc
        if model is not None:
            mask.check_compatible(model)
            if strict:
                missing = _prunable_missing(model, mask)
                if missing:
                    raise MaskMismatchError(
                        f"the mask file {path} lacks {len(missing)} of the "
                        f"{len(missing) + len(mask)} prunable layer(s) of "
                        f"{type(model).__name__} ({', '.join(missing[:10])}"
                        f"{', ...' if len(missing) > 10 else ''}); applied, they would stay "
                        "dense. Was it made for another model or with exclude=? Pass "
                        "strict=False to accept a partial mask")
        return mask

    @staticmethod
    def load_metadata(path: str | os.PathLike) -> dict[str, object]:
        """The ``metadata`` dict stored by :meth:`save` (raises like :meth:`load`)."""
        path = Path(path)
        meta = _read_safetensors(path, tensors=False)[1]
        try:
            out = json.loads(meta.get("paizoo", "{}"))
        except ValueError as exc:
            raise MaskFileError(f"{path}: the paizoo metadata is not valid JSON: {exc}") from exc
        if not isinstance(out, dict):
            raise MaskFileError(f"{path}: the paizoo metadata is not a JSON object")
        return out


def _prunable_missing(model: nn.Module, mask: Mask) -> list[str]:
    """The default-coverage prunable parameters of ``model`` that ``mask`` does not hold under
    any of their names (a tied tensor may be held under any use's name); parameters paizoo
    refuses to mask (:class:`~paizoo.errors.CoverageError` when pruned) cannot be held, so
    they are not missing."""
    table = parameter_table(model)
    held = {id(info.param) for info in table.values()
            if any(n in mask._tensors for n in (info.name, *info.aliases))}
    refused = [n for n, info in table.items() if info.refusal is not None]
    return [n for n, info in select_parameters(model, exclude=refused).items()
            if id(info.param) not in held]


def _read_safetensors(path: Path, *, tensors: bool
                      ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (if asked) and the header metadata of a safetensors file, every failure to
    read it as a :class:`MaskFileError` naming the file."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"no mask file at {path}")
    out: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if tensors:
                for name in f.keys():
                    out[name] = f.get_tensor(name)
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ...
        detail = " ".join(str(exc).split())
        raise MaskFileError(f"cannot read the mask file {path}: {detail} (a corrupt, "
                            "truncated or non-safetensors file; save masks with Mask.save or "
                            "`paizoo prune --out`)") from exc
    return out, meta


def compression_of(density: float) -> float:
    """x with density = 10^-x (the SynFlow paper's compression axis)."""
    return -math.log10(density) if density > 0 else math.inf
