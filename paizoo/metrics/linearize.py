"""The linearised copy of a masked network: path counting with ordinary forward/backward passes.

:func:`linearized_copy` returns a deep copy of a model in which every unit computes a non-negative
linear function of its inputs whose coefficients are the *edges* of the network's unrolled graph:

* the weight of each Conv/Linear module becomes its 0/1 mask (prunable weights missing from the
  mask count as dense, i.e. all ones) and its bias becomes zero; stride, padding (mode included),
  dilation and groups are kept;
* normalisation layers (BatchNorm, GroupNorm, LayerNorm, InstanceNorm, LocalResponseNorm),
  activations, dropout and softmax become :class:`~torch.nn.Identity` (they are not edges);
* every pooling layer becomes a **sum** over its window: ``MaxPool``/``AvgPool`` ->
  :class:`SumPool` (same kernel, stride, padding, ``ceil_mode``), ``AdaptiveAvgPool``/
  ``AdaptiveMaxPool`` -> :class:`AdaptiveSumPool`. A max-pool is thereby read as a set of edges,
  one from each unit of its window to the pooled unit (all of them may carry a path), not as the
  data-dependent selection of one unit; padding units are not nodes and contribute nothing.

With an all-ones input, the output of the linearised network at a unit is the number of paths
from the input units to that unit, and the gradient of the summed output with respect to a unit
is the number of paths from that unit to the output units (Vysogorets & Kempe 2021; Pham et al.
2023). Additions of branches (residual shortcuts) and flatten/reshape operations need no
replacement: they already are sums and re-indexings of units. Functional calls such as
``F.relu`` inside a module's ``forward`` cannot be replaced; with non-negative weights and inputs
they act as the identity, except functional max-pooling, which would select one unit: such models
must use ``nn.MaxPool`` modules (the modules of torchvision, timm and paizoo do).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize
from torch import nn

from ..errors import UnsupportedLayerError
from ..params import PRUNABLE_MODULE_TYPES
from ..reparam import remove_masks

_IDENTITY_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Softmax,
    nn.LogSoftmax, nn.Softmin, nn.modules.dropout._DropoutNd, nn.Identity,
)
_POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_TYPES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                   nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
#: parameter-free modules of other libraries known to be pass-through or pooling, by class name
_IDENTITY_NAMES = {"DropPath", "BatchNormAct2d", "GroupNormAct", "LayerNorm2d", "GELUTanh",
                   "QuickGELU", "Swish", "HardSwish", "HardSigmoid", "HardMish"}
_ADAPTIVE_NAMES = {"FastAdaptiveAvgPool", "FastAdaptiveMaxPool", "FastAdaptiveAvgMaxPool",
                   "AdaptiveAvgMaxPool2d"}


class SumPool(nn.Module):
    """Sum of the units in each pooling window (zero padding), for 1-3 spatial dimensions."""

    def __init__(self, dims: int, kernel_size: object, stride: object, padding: object,
                 ceil_mode: bool) -> None:
        super().__init__()
        self.dims = dims
        self.kernel_size = _tuple(kernel_size, dims)
        self.stride = _tuple(stride if stride is not None else kernel_size, dims)
        self.padding = _tuple(padding, dims)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 1:
            return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                count_include_pad=True) * self.kernel_size[0]
        pool = F.avg_pool2d if self.dims == 2 else F.avg_pool3d
        return pool(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                    count_include_pad=True, divisor_override=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveSumPool(nn.Module):
    """Sum over the windows of adaptive pooling: window i of an axis of length I pooled to O
    covers ``floor(i I / O) .. ceil((i + 1) I / O) - 1`` (PyTorch's adaptive pooling windows)."""

    def __init__(self, dims: int, output_size: object, flatten: bool = False) -> None:
        super().__init__()
        self.dims = dims
        self.output_size = output_size
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[-self.dims:])
        out = _tuple(self.output_size, self.dims)
        out = tuple(s if o is None else int(o) for s, o in zip(spatial, out, strict=True))
        if all(o == 1 for o in out):
            y = x.sum(dim=tuple(range(x.dim() - self.dims, x.dim())), keepdim=True)
        else:
            pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[
                self.dims - 1]
            y = pool(x, out)
            for axis, (size_in, size_out) in enumerate(zip(spatial, out, strict=True)):
                idx = torch.arange(size_out, device=x.device)
                lengths = (torch.div((idx + 1) * size_in + size_out - 1, size_out,
                                     rounding_mode="floor")
                           - torch.div(idx * size_in, size_out, rounding_mode="floor"))
                shape = [1] * y.dim()
                shape[y.dim() - self.dims + axis] = size_out
                y = y * lengths.to(y.dtype).reshape(shape)
        return y.flatten(1) if self.flatten else y


def _tuple(value: object, dims: int) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != dims:
            raise ValueError(f"expected {dims} values, got {value!r}")
        return tuple(value)
    return (value,) * dims


def _pool_dims(module: nn.Module) -> int:
    name = type(module).__name__
    return 3 if "3d" in name else 1 if "1d" in name else 2


def _replacement(module: nn.Module) -> nn.Module | None:
    """The module's linearised stand-in, or None to keep it (and recurse into its children)."""
    if isinstance(module, PRUNABLE_MODULE_TYPES):
        return None
    if isinstance(module, _IDENTITY_TYPES) or type(module).__name__ in _IDENTITY_NAMES:
        return nn.Identity()
    if isinstance(module, _POOL_TYPES):
        dilation = getattr(module, "dilation", 1)
        if any(d != 1 for d in _tuple(dilation, _pool_dims(module))):
            raise UnsupportedLayerError(
                f"{type(module).__name__} with dilation {dilation} cannot be linearised; only "
                "dilation 1 pooling is supported")
        return SumPool(_pool_dims(module), module.kernel_size, module.stride, module.padding,
                       module.ceil_mode)
    if isinstance(module, _ADAPTIVE_TYPES):
        return AdaptiveSumPool(_pool_dims(module), module.output_size)
    if type(module).__name__ in _ADAPTIVE_NAMES:
        flatten = bool(getattr(module, "flatten", False))
        return AdaptiveSumPool(2, getattr(module, "output_size", 1), flatten=flatten)
    return None


def linearized_copy(model: nn.Module, mask: Mapping[str, torch.Tensor],
                    dtype: torch.dtype = torch.float64) -> nn.Module:
    """A deep copy of ``model`` reduced to its unrolled graph (see the module docstring).

    Every ``Conv``/``Linear`` weight named in ``mask`` becomes ``mask`` as ``dtype``; other such
    weights become all ones; biases become zero. The copy is in eval mode, on the CPU device of
    the mask tensors, with ``requires_grad=False`` everywhere.

    Raises:
        UnsupportedLayerError: a module with parameters that is neither a Conv/Linear nor a
            normalisation layer (e.g. an embedding or attention block) has no linearisation;
            or a Conv/Linear weight is parametrized (weight norm, ...).
    """
    # with a torch.nn.utils.prune re-parametrisation, ``weight`` is a computed (non-leaf) tensor
    # that deepcopy refuses; give the copy a detached clone of it
    memo: dict[int, object] = {}
    for module in model.modules():
        w = module.__dict__.get("weight")
        if isinstance(w, torch.Tensor) and not isinstance(w, nn.Parameter):
            memo[id(w)] = w.detach().clone()
    try:
        lin = copy.deepcopy(model, memo)
    except Exception as exc:  # pragma: no cover - exotic user modules
        raise TypeError(f"cannot deep-copy {type(model).__name__} to linearise it: {exc}") from exc
    remove_masks(lin)
    _replace_children(lin, prefix="")
    unsupported = []
    parametrized = [f"{n or '<root>'} ({type(m).__name__})" for n, m in lin.named_modules()
                    if isinstance(m, PRUNABLE_MODULE_TYPES)
                    and parametrize.is_parametrized(m, "weight")]
    if parametrized:
        raise UnsupportedLayerError(
            f"cannot linearise parametrized weights (weight_norm, spectral_norm, ...): "
            f"{', '.join(parametrized[:10])}; the metrics read plain Conv/Linear weights: "
            "bake the parametrization in first (torch.nn.utils.parametrize."
            "remove_parametrizations(module, 'weight')) and prune that model")
    for name, module in lin.named_modules():
        if isinstance(module, PRUNABLE_MODULE_TYPES):
            weight_name = f"{name}.weight" if name else "weight"
            keep = mask.get(weight_name)
            weight = module.weight
            if keep is not None and tuple(keep.shape) != tuple(weight.shape):
                raise UnsupportedLayerError(
                    f"mask entry {weight_name!r} has shape {tuple(keep.shape)} but the weight has "
                    f"shape {tuple(weight.shape)}")
            value = (keep.to(dtype) if keep is not None
                     else torch.ones(weight.shape, dtype=dtype))
            module.weight = nn.Parameter(value.to("cpu"), requires_grad=False)
            if getattr(module, "bias", None) is not None:
                module.bias = nn.Parameter(torch.zeros(module.bias.shape, dtype=dtype),
                                           requires_grad=False)
        elif any(True for _ in module.parameters(recurse=False)):
            unsupported.append(f"{name or '<root>'} ({type(module).__name__})")
    if unsupported:
        raise UnsupportedLayerError(
            "cannot linearise modules with parameters other than Conv/Linear weights and "
            f"normalisation layers: {', '.join(unsupported[:10])}"
            + (" ..." if len(unsupported) > 10 else ""))
    for buf_name, buf in list(lin.named_buffers()):
        if buf.is_floating_point():
            module_name, _, attr = buf_name.rpartition(".")
            owner = lin.get_submodule(module_name) if module_name else lin
            owner._buffers[attr] = buf.to(device="cpu", dtype=dtype)
    lin.to(device="cpu", dtype=dtype)
    lin.eval()
    for p in lin.parameters():
        p.requires_grad_(False)
    return lin


def _replace_children(module: nn.Module, prefix: str) -> None:
    for child_name, child in list(module.named_children()):
        new = _replacement(child)
        if new is not None:
            setattr(module, child_name, new)
        else:
            _replace_children(child, f"{prefix}{child_name}.")


# ---- passes over the linearised network ----------------------------------------------------

class _Reach(torch.autograd.Function):
    """0/1 reachability: forward ``x > 0``, backward ``grad > 0`` (both as the input's dtype)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (grad > 0).to(grad.dtype)


@dataclass
class LayerTrace:
    """What one prunable module of the linearised network saw in a forward pass."""

    name: str
    module_type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    #: number of edges of the module's unrolled bipartite graph (kept weight x valid position)
    edges: int
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] | str = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1


@dataclass
class ReachResult:
    """Outcome of :func:`reachability`."""

    #: ``{param: bool tensor}``: kept weights lying on some input -> output path
    effective: dict[str, torch.Tensor]
    #: ``{param: bool tensor of the module's output (no batch dim)}``: units on some path
    effective_units: dict[str, torch.Tensor]
    traces: dict[str, LayerTrace] = field(default_factory=dict)


def _output_tensor(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    raise UnsupportedLayerError(
        f"the model returns a {type(out).__name__}; path metrics need a model whose forward "
        "returns one tensor")


def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def _prunable(lin: nn.Module) -> dict[str, nn.Module]:
    return {_weight_name(n): m for n, m in lin.named_modules()
            if isinstance(m, PRUNABLE_MODULE_TYPES)}


def trace_layers(lin: nn.Module, input_shape: tuple[int, ...]) -> dict[str, LayerTrace]:
    """Shapes and unrolled edge counts of every Conv/Linear of a linearised network.

    One float forward with an all-ones input; the edge count of a module is the sum of its
    output on an all-ones input of the same shape (weights = 0/1 mask, no bias), i.e. the number
    of (kept weight, valid position) pairs.
    """
    traces: dict[str, LayerTrace] = {}
    handles = []
    for name, module in _prunable(lin).items():
        def hook(mod: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
            x = args[0]
            edges = float(mod.forward(torch.ones_like(x)).sum())  # forward(): no hooks
            traces[name] = LayerTrace(
                name, type(mod).__name__, tuple(x.shape[1:]), tuple(out.shape[1:]),
                round(edges),
                stride=tuple(getattr(mod, "stride", ())), padding=getattr(mod, "padding", ()),
                dilation=tuple(getattr(mod, "dilation", ())), groups=int(getattr(mod, "groups", 1)))
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            dtype = next(lin.parameters()).dtype
            _output_tensor(lin(torch.ones((1, *input_shape), dtype=dtype)))
    finally:
        for h in handles:
            h.remove()
    return traces


def count_paths_log10(lin: nn.Module, input_shape: tuple[int, ...]) -> float:
    """log10 of the number of input -> output paths (float64 forward of the linearised net).

    Returns ``-inf`` when there is no path and ``+inf`` when the count exceeds float64 (about
    1e308 paths).
    """
    with torch.no_grad():
        out = _output_tensor(lin.double()(torch.ones((1, *input_shape), dtype=torch.float64)))
        total = float(out.sum())
    if total <= 0:
        return -math.inf
    return math.log10(total)


def reachability(lin: nn.Module, mask: Mapping[str, torch.Tensor],
                 input_shape: tuple[int, ...]) -> ReachResult:
    """Effective weights and units via one forward and one backward pass with 0/1 clamping.

    After every Conv/Linear, unit values are clamped to 0/1 (reached from some input unit or
    not) and so are the gradients flowing back (reaching some output unit or not), so nothing
    overflows. The gradient of the summed output with respect to a weight is then the number of
    positions where the weight joins a reached input unit to an output unit that reaches the
    output: a kept weight is effective iff that gradient is positive.
    """
    lin = lin.float()
    modules = _prunable(lin)
    forward_reach: dict[str, torch.Tensor] = {}
    backward_reach: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        module.weight.requires_grad_(True)

        def hook(mod: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> torch.Tensor:
            reached = _Reach.apply(out)
            forward_reach[name] = reached.detach()[0] > 0

            def grad_hook(g: torch.Tensor, name: str = name) -> None:
                backward_reach[name] = g.detach()[0] > 0

            reached.register_hook(grad_hook)
            return reached
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            out = _output_tensor(lin(torch.ones((1, *input_shape), dtype=torch.float32)))
            out.sum().backward()
    finally:
        for h in handles:
            h.remove()
        for module in modules.values():
            module.weight.requires_grad_(False)
    effective: dict[str, torch.Tensor] = {}
    units: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        grad = module.weight.grad
        keep = (mask[name].bool() if name in mask
                else torch.ones_like(module.weight, dtype=torch.bool))
        effective[name] = (grad > 0) & keep if grad is not None else torch.zeros_like(keep)
        module.weight.grad = None
        if name in forward_reach:
            back = backward_reach.get(name, torch.zeros_like(forward_reach[name]))
            units[name] = forward_reach[name] & back
    return ReachResult(effective, units)
