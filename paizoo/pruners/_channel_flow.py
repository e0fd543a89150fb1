"""Which channels feed which: the unit-level data flow between prunable layers (``torch.fx``).

Path-based pruners (PHEW) walk from input channels to output units through the prunable layers.
Between two prunable layers the data passes through weight-free operations (norms,
activations, pooling, residual additions, flattening, concatenation, channel padding). This
module traces the model with ``torch.fx`` and, for every prunable layer, records which *sources*
feed each of its input units. Sources are the model's input channels (ids ``0 .. C_in - 1``)
and the output units of the prunable layers (one id block per layer).

Units are channels (dim 1) for convolutions and features for Linear layers on ``(batch,
features)`` tensors; flattening ``(C, H, W)`` to features maps feature ``c * H * W + s`` to
channel ``c``. A residual addition feeds each channel from both branches; zero padding of
channels (option-A shortcuts) and constants feed nothing. Anything else (attention, arbitrary
reshapes, Linear layers on 3-D tensors) raises :class:`~paizoo.errors.UnsupportedLayerError`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import UnsupportedLayerError
from ..params import PRUNABLE_MODULE_TYPES, layer_path

Flow = sp.csr_matrix  # (channels, num_sources) boolean


@dataclass
class ChannelFlow:
    """Unit-level data flow between the prunable layers of a model.

    Attributes:
        layers: prunable parameter names in execution order.
        num_inputs: channels of the model input (sources ``0 .. num_inputs - 1``).
        offsets: source id of each layer's first output unit.
        num_sources: inputs plus all layers' output units.
        feeds: ``{name: (in_units, num_sources) bool csr}``, the sources of each input unit.
        output: ``(output_units, num_sources) bool csr``, the sources of each model output unit.
        groups: convolution groups of each layer (1 for Linear).
    """

    layers: list[str]
    num_inputs: int
    offsets: dict[str, int]
    num_sources: int
    feeds: dict[str, sp.csr_matrix]
    output: sp.csr_matrix
    groups: dict[str, int] = field(default_factory=dict)


_PRESERVING_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm, nn.Identity,
    nn.modules.dropout._DropoutNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd, nn.Upsample, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU,
    nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, nn.Threshold,
    nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
)
_MIXING_MODULES: tuple[type[nn.Module], ...] = (nn.Softmax, nn.LogSoftmax, nn.Softmin)

_PRESERVING_FUNCTIONS: set[Any] = {
    F.relu, F.relu_, F.relu6, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.leaky_relu,
    F.hardtanh, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh, F.softplus, F.logsigmoid,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.neg,
    torch.clamp, torch.square, torch.sqrt, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d,
    F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.batch_norm,
    F.layer_norm, F.group_norm, F.instance_norm, F.interpolate, operator.neg, operator.pos,
    operator.abs,
}
_BINARY_FUNCTIONS: set[Any] = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    torch.maximum, torch.minimum,
}
_PRESERVING_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "contiguous",
    "clone", "float", "double", "half", "bfloat16", "to", "type_as", "detach", "abs", "neg",
    "exp", "sqrt", "square",
}
_CONSTANT_FUNCTIONS: set[Any] = {torch.zeros_like, torch.ones_like, torch.full_like,
                                  torch.empty_like, torch.rand_like, torch.randn_like}
_CONSTANT_METHODS = {"new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}


class _Tracer(fx.Tracer):
    """Keeps every prunable module (including subclasses such as timm's Conv2dSame) a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, PRUNABLE_MODULE_TYPES):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _identity(rows: int, start: int, total: int) -> Flow:
    data = np.ones(rows, dtype=bool)
    return sp.csr_matrix((data, (np.arange(rows), np.arange(start, start + rows))),
                         shape=(rows, total))


def _bool(m: sp.spmatrix) -> Flow:
    m = sp.csr_matrix(m)
    m.data = m.data != 0
    m.eliminate_zeros()
    return m.astype(bool)


def trace_channel_flow(model: nn.Module, names: list[str], input_shape: tuple[int, ...]
                       ) -> ChannelFlow:
    """Trace ``model`` (not modified; traced on the given instance in eval mode) for ``names``.

    Args:
        model: the network; prunable weights are ``<module>.weight`` for each name.
        names: the prunable parameter names.
        input_shape: one sample's shape without the batch dimension, e.g. ``(3, 32, 32)``.
    """
    by_module = {layer_path(name): name for name in names}
    tracer = _Tracer()
    param = next(iter(model.parameters()))
    was_training = model.training
    model.eval()  # the inference data flow (e.g. no auxiliary training heads)
    try:
        try:
            graph = tracer.trace(model)
        except Exception as exc:
            raise UnsupportedLayerError(
                f"PHEW needs the data flow between layers and torch.fx cannot trace "
                f"{type(model).__name__}: {exc}") from exc
        gm = fx.GraphModule(tracer.root, graph)
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(torch.zeros((2, *input_shape), dtype=param.dtype,
                                                    device=param.device))
        except Exception as exc:
            raise UnsupportedLayerError(
                f"running {type(model).__name__} on an input of shape {(2, *input_shape)} "
                f"failed: {exc}. Is input_shape right?") from exc
    finally:
        model.train(was_training)

    modules = dict(model.named_modules())
    num_inputs = int(input_shape[0]) if input_shape else 1
    offsets: dict[str, int] = {}
    total = num_inputs
    for name in names:
        offsets[name] = total
        total += int(modules[layer_path(name)].weight.shape[0])  # type: ignore[union-attr]

    flows: dict[fx.Node, Flow | None] = {}
    feeds: dict[str, Flow] = {}
    order: list[str] = []
    output: Flow | None = None
    seen_input = False

    def shape(node: Any) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def channels(node: fx.Node) -> int:
        s = shape(node)
        assert s is not None
        return int(s[1]) if len(s) >= 2 else 1

    def fail(node: fx.Node, why: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(
            f"PHEW cannot follow the channels through {node.op} {node.target!r} (node "
            f"{node.name!r}): {why}. Supported between prunable layers: norms, activations, "
            "dropout, pooling, residual additions/products, flatten, channel concatenation, "
            "slicing and zero padding")

    def flow_of(arg: Any, node: fx.Node) -> Flow:
        f = flows.get(arg) if isinstance(arg, fx.Node) else None
        if f is None:
            raise fail(node, f"argument {arg!r} is not a traced tensor")
        return f

    def broadcast(f: Flow, rows: int, node: fx.Node) -> Flow:
        if f.shape[0] == rows:
            return f
        if f.shape[0] == 1:
            return _bool(sp.csr_matrix(np.ones((rows, 1), dtype=bool)) @ f)
        raise fail(node, f"cannot broadcast {f.shape[0]} channels to {rows}")

    def preserve(node: fx.Node, source: Any) -> Flow:
        f = flow_of(source, node)
        if f.shape[0] != channels(node):
            raise fail(node, f"the channel count changes from {f.shape[0]} to {channels(node)}")
        return f

    def mix(node: fx.Node, source: Any) -> Flow:
        f = flow_of(source, node)
        union = _bool(sp.csr_matrix(f.sum(axis=0)))
        return broadcast(union, channels(node), node)

    def reshape(node: fx.Node, source: Any) -> Flow:
        f = flow_of(source, node)
        before, after = shape(source), shape(node)
        assert before is not None and after is not None
        if after == before or (len(after) >= 2 and len(before) >= 2 and after[:2] == before[:2]):
            return f
        if (len(after) == 2 and len(before) >= 3 and after[0] == before[0]
                and after[1] == math.prod(before[1:])):
            spatial = math.prod(before[2:])
            return _bool(sp.kron(f, np.ones((spatial, 1), dtype=bool), format="csr"))
        raise fail(node, f"reshape from {before} to {after} moves units across channels")

    def constant(node: fx.Node) -> Flow | None:
        s = shape(node)
        if s is None:
            return None
        return sp.csr_matrix((int(s[1]) if len(s) >= 2 else 1, total), dtype=bool)

    def binary(node: fx.Node) -> Flow:
        rows = channels(node)
        out = sp.csr_matrix((rows, total), dtype=bool)
        args = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        for a in args:
            f = flows.get(a)
            if f is None:
                continue  # a Python number computed in the graph
            sa, so = shape(a), shape(node)
            if sa is not None and so is not None and len(sa) < len(so) and f.nnz:
                raise fail(node, f"an operand of shape {sa} broadcasts against {so}")
            out = out + broadcast(f, rows, node)
        return _bool(out)

    def getitem(node: fx.Node) -> Flow | None:
        source, index = node.args[0], node.args[1]
        if not isinstance(source, fx.Node) or flows.get(source) is None:
            return None  # e.g. x.size()[0]
        f = flows[source]
        s = shape(source)
        assert s is not None
        index = list(index) if isinstance(index, tuple) else [index]
        if any(i is None for i in index[:2]):
            raise fail(node, f"index {tuple(index)} inserts a dimension before the channels")
        if Ellipsis in index:  # expand to full slices
            at = index.index(Ellipsis)
            index[at:at + 1] = [slice(None)] * (len(s) - len(index) + 1)
        index += [slice(None)] * (2 - len(index))
        if index[0] != slice(None):
            raise fail(node, f"index {tuple(index)} selects batch entries")
        if index[1] == slice(None):
            return preserve(node, source)
        if not isinstance(index[1], slice):
            raise fail(node, f"index {tuple(index)} selects single channels")
        return f[np.arange(f.shape[0])[index[1]]]

    def pad(node: fx.Node) -> Flow:
        source = node.args[0]
        widths = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
        f = flow_of(source, node)
        s = shape(source)
        assert s is not None
        covered = len(widths) // 2
        if covered < len(s) - 1:
            return preserve(node, source)
        if covered >= len(s):
            raise fail(node, "padding of the batch dimension")
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        if mode != "constant":
            raise fail(node, f"{mode} padding of the channel dimension")
        before, after = int(widths[2 * (len(s) - 2)]), int(widths[2 * (len(s) - 2) + 1])
        return sp.vstack([sp.csr_matrix((before, total), dtype=bool), f,
                          sp.csr_matrix((after, total), dtype=bool)], format="csr")

    def cat(node: fx.Node) -> Flow:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        s = shape(node)
        assert s is not None
        dim = dim % len(s)
        parts = [flows.get(t) if isinstance(t, fx.Node) else None for t in tensors]
        parts = [p if p is not None else constant(t) for p, t in zip(parts, tensors, strict=True)]
        if dim == 1:
            return sp.vstack(parts, format="csr")
        out = sp.csr_matrix((channels(node), total), dtype=bool)
        for p in parts:
            out = out + broadcast(p, channels(node), node)
        return _bool(out)

    def reduce(node: fx.Node) -> Flow:
        source = node.args[0]
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        s = shape(source)
        assert s is not None
        if dims is None:
            raise fail(node, "a reduction over all dimensions")
        dims = dims if isinstance(dims, (tuple, list)) else (dims,)
        if any(d % len(s) in (0, 1) for d in dims):
            raise fail(node, "a reduction over the batch or channel dimension")
        return preserve(node, source)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if seen_input:
                if node.args or not node.users:  # an optional argument left at its default
                    flows[node] = None
                    continue
                raise fail(node, "models with several inputs are not supported")
            seen_input = True
            flows[node] = _identity(channels(node), 0, total)
        elif node.op == "get_attr":
            flows[node] = constant(node)
        elif node.op == "call_module":
            module = modules[node.target]
            qualified = str(node.target)
            if qualified in by_module:
                name = by_module[qualified]
                if name in feeds:
                    raise fail(node, f"{qualified} is called more than once (shared weights)")
                f = flow_of(node.args[0], node)
                units = int(module.weight.shape[1]) * int(getattr(module, "groups", 1))
                if f.shape[0] != units:
                    raise fail(node, f"{qualified} has {units} input units but its input has "
                               f"{f.shape[0]} channels (Linear layers must act on (batch, "
                               "features) tensors)")
                feeds[name] = f
                order.append(name)
                out_units = int(module.weight.shape[0])
                flows[node] = _identity(out_units, offsets[name], total)
            elif isinstance(module, PRUNABLE_MODULE_TYPES):  # excluded from pruning: dense
                flows[node] = mix(node, node.args[0])
            elif isinstance(module, _PRESERVING_MODULES):
                flows[node] = preserve(node, node.args[0])
            elif isinstance(module, nn.Flatten):
                flows[node] = reshape(node, node.args[0])
            elif isinstance(module, _MIXING_MODULES):
                dims = len(shape(node) or (0, 0))
                flows[node] = (mix(node, node.args[0])
                               if module.dim is None or module.dim % dims == 1
                               else preserve(node, node.args[0]))
            else:
                raise fail(node, f"{type(module).__name__} is not a known weight-free module")
        elif node.op == "call_function":
            target = node.target
            if target in _PRESERVING_FUNCTIONS:
                flows[node] = preserve(node, node.args[0])
            elif target in _BINARY_FUNCTIONS:
                flows[node] = binary(node) if shape(node) is not None else None
            elif target is torch.flatten:
                flows[node] = reshape(node, node.args[0])
            elif target is operator.getitem:
                flows[node] = getitem(node)
            elif target is F.pad:
                flows[node] = pad(node)
            elif target is torch.cat:
                flows[node] = cat(node)
            elif target in _CONSTANT_FUNCTIONS:
                flows[node] = constant(node)
            elif target in (torch.mean, torch.sum, torch.amax, torch.amin):
                flows[node] = reduce(node)
            elif shape(node) is None:
                flows[node] = None  # arithmetic on sizes etc.
            elif not any(isinstance(a, fx.Node) and flows.get(a) is not None
                         for a in (*node.args, *node.kwargs.values())):
                flows[node] = constant(node)  # e.g. torch.zeros(...)
            else:
                raise fail(node, "unknown function")
        elif node.op == "call_method":
            method = node.target
            if shape(node) is None:
                flows[node] = None  # size(), dim(), ...
            elif method in _PRESERVING_METHODS:
                flows[node] = preserve(node, node.args[0])
            elif method in _BINARY_METHODS:
                flows[node] = binary(node)
            elif method in _CONSTANT_METHODS:
                flows[node] = constant(node)
            elif method in _RESHAPE_METHODS:
                flows[node] = reshape(node, node.args[0])
            elif method in _REDUCE_METHODS:
                flows[node] = reduce(node)
            else:
                raise fail(node, "unknown tensor method")
        elif node.op == "output":
            result = node.args[0]
            if not isinstance(result, fx.Node):
                raise fail(node, "the model must return one tensor")
            output = flow_of(result, node)
    missing = [n for n in names if n not in feeds]
    if missing:
        raise UnsupportedLayerError(
            f"the traced forward pass (eval mode) never calls {missing}, so no input-output path "
            f"can use their weights; leave them out with exclude={missing}")
    assert output is not None
    groups = {n: int(getattr(modules[layer_path(n)], "groups", 1)) for n in names}
    return ChannelFlow(layers=order, num_inputs=num_inputs, offsets=offsets,
                       num_sources=total, feeds=feeds, output=output, groups=groups)
