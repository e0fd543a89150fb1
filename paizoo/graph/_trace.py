"""Data flow of a model for the MGE: torch.fx tracing, shape propagation and classification.

Every live node of the traced graph is classified into one of

``input``        the network input (first placeholder);
``const``        a value that does not depend on the input's data (parameters, sizes, ...);
``shape``        a query of a data tensor's shape (``x.size(0)``, ``x.shape``, ``x.dim()``);
``elementwise``  a shape-preserving operation on one data tensor (activations, normalisation,
                 dropout, scaling by a constant, adding a constant): no nodes, an alias;
``relabel``      a pure re-indexing of units (reshape, flatten, permute, slicing, padding,
                 concatenation, ...): no nodes, computed by running the operation on node ids;
``conv``/``linear``/``pool``/``reduce``  node-creating operations;
``add``          the sum (or difference) of two or more data tensors.

Anything else on the data path raises :class:`~paizoo.errors.UnsupportedLayerError` naming the
operation and the module it sits in.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedLayerError
from ..params import PRUNABLE_MODULE_TYPES
from .errors import GraphEncodingError

# ---- operation tables ----------------------------------------------------------------------

CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_ACTIVATIONS = tuple(getattr(nn, name) for name in nn.modules.activation.__all__
                     if name not in ("MultiheadAttention", "GLU"))
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    *_ACTIVATIONS, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.dropout._DropoutNd,
    nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
RELABEL_MODULES: tuple[type[nn.Module], ...] = (
    nn.Flatten, nn.Unflatten, nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd,
    *((nn.modules.padding._CircularPadNd,) if hasattr(nn.modules.padding, "_CircularPadNd")
      else ()),
    nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.Upsample,
)

ADD_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub,
                 torch.subtract}
ADD_METHODS = {"add", "sub", "subtract"}
PRODUCT_FUNCTIONS = {operator.mul, operator.imul, operator.truediv, operator.itruediv,
                     operator.floordiv, torch.mul, torch.multiply, torch.div, torch.divide,
                     torch.true_divide, torch.matmul, operator.matmul, torch.bmm, torch.mm,
                     torch.einsum}
PRODUCT_METHODS = {"mul", "mul_", "div", "div_", "multiply", "divide", "true_divide", "matmul",
                   "bmm", "mm"}
ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.elu, F.elu_, F.selu, F.celu, F.leaky_relu, F.leaky_relu_,
    F.prelu, F.rrelu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh,
    F.hardtanh_, F.sigmoid, F.tanh, F.softplus, F.softsign, F.logsigmoid, F.softmax,
    F.log_softmax, F.softmin, F.threshold, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.feature_alpha_dropout, F.batch_norm, F.layer_norm, F.group_norm,
    F.instance_norm, F.local_response_norm, F.normalize, torch.relu, torch.relu_,
    torch.sigmoid, torch.tanh, torch.clamp, torch.clip, torch.neg, torch.abs, torch.exp,
    torch.softmax, torch.log_softmax, torch.batch_norm, torch.layer_norm, torch.group_norm,
    torch.dropout, operator.neg, operator.pos, torch.nn.functional.hardshrink,
    *((F.rms_norm,) if hasattr(F, "rms_norm") else ()),
}
ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_",
    "clamp_min", "clamp_min_", "clamp_max", "float", "double", "half", "bfloat16", "to", "type",
    "type_as", "contiguous", "clone", "detach", "neg", "abs", "exp", "softmax", "log_softmax",
    "requires_grad_", "cpu", "cuda",
}
SHAPE_METHODS = {"size", "dim", "numel", "nelement", "ndimension", "stride", "get_device",
                 "is_contiguous"}
SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda", "layout"}
RELABEL_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.swapaxes,
    torch.squeeze, torch.unsqueeze, torch.cat, torch.concat, torch.concatenate, torch.stack,
    torch.chunk, torch.split, torch.tensor_split, torch.narrow, torch.flip, torch.roll,
    torch.movedim, torch.moveaxis, torch.unbind, torch.channel_shuffle, torch.t, torch.select,
    F.pad, torch._C._nn.pad, torch.constant_pad_nd, F.pixel_shuffle, F.pixel_unshuffle,
    torch.pixel_shuffle, torch.pixel_unshuffle, F.interpolate, operator.getitem,
}
RELABEL_METHODS = {
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "swapaxes", "t",
    "squeeze", "unsqueeze", "expand", "expand_as", "repeat", "narrow", "select", "chunk",
    "split", "tensor_split", "unbind", "flip", "roll", "view_as", "reshape_as", "movedim",
    "moveaxis", "__getitem__",
}
CONV_FUNCTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
LINEAR_FUNCTIONS = {F.linear}
POOL_FUNCTIONS: dict[Any, tuple[str, int]] = {
    F.max_pool1d: ("max", 1), F.max_pool2d: ("max", 2), F.max_pool3d: ("max", 3),
    F.avg_pool1d: ("avg", 1), F.avg_pool2d: ("avg", 2), F.avg_pool3d: ("avg", 3),
    F.adaptive_avg_pool1d: ("adaptive_avg", 1), F.adaptive_avg_pool2d: ("adaptive_avg", 2),
    F.adaptive_avg_pool3d: ("adaptive_avg", 3), F.adaptive_max_pool1d: ("adaptive_max", 1),
    F.adaptive_max_pool2d: ("adaptive_max", 2), F.adaptive_max_pool3d: ("adaptive_max", 3),
    torch.max_pool1d: ("max", 1), torch.max_pool2d: ("max", 2), torch.max_pool3d: ("max", 3),
}
REDUCE_FUNCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.amax: "max"}
REDUCE_METHODS = {"mean": "mean", "sum": "sum", "amax": "max"}
INPLACE_ADD_METHODS = {"add_", "sub_"}


# ---- tracing -------------------------------------------------------------------------------

def _stock_forward(module: nn.Module) -> bool:
    """Whether a Conv/Linear (sub)class keeps torch's own ``forward``."""
    for base in (*CONV_MODULES, nn.Linear):
        if isinstance(module, base):
            return type(module).forward is base.forward
    return False


class _Tracer(fx.Tracer):
    def __init__(self, passthrough: tuple[type[nn.Module], ...]):
        super().__init__()
        self.passthrough = passthrough

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.passthrough and isinstance(m, self.passthrough):
            return True
        if isinstance(m, PRUNABLE_MODULE_TYPES) and _stock_forward(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, passthrough: tuple[type[nn.Module], ...] = ()) -> fx.GraphModule:
    """``model`` as a :class:`torch.fx.GraphModule` (returned as is when it already is one)."""
    if isinstance(model, fx.GraphModule):
        return model
    tracer = _Tracer(passthrough)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, ... on dynamic control flow
        raise UnsupportedLayerError(
            f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {exc}. The "
            "MGE needs the data flow of the model; make its forward traceable (no control flow "
            "on tensor values) or pass a torch.fx.GraphModule you traced yourself."
        ) from exc
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


SHAPE_KEY = "paizoo_shape"
VALUE_KEY = "paizoo_value"


def _plain(value: Any) -> bool:
    """Whether ``value`` is a Python constant (ints, floats, sizes, ... and tuples of them)."""
    if isinstance(value, (bool, int, float, str, type(None), torch.dtype, torch.device)):
        return True
    if isinstance(value, (tuple, list)):  # torch.Size is a tuple
        return all(_plain(v) for v in value)
    return False


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph and stores each tensor-valued node's shape in ``node.meta[SHAPE_KEY]``
    and each constant-valued node's value (e.g. ``x.size()[3]``) in ``node.meta[VALUE_KEY]``."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        n.meta[SHAPE_KEY] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
        if _plain(result):
            n.meta[VALUE_KEY] = result
        return result


def concrete(gm: fx.GraphModule, consumer: fx.Node, value: Any) -> Any:
    """``value`` (an argument of ``consumer``) with every fx node replaced by the constant it
    computed in :func:`propagate_shapes` (e.g. a pooling size ``x.size()[3]``).

    Raises:
        UnsupportedLayerError: an argument is a tensor or was not recorded: the operation's
            parameters depend on the data, which the graph encoding cannot represent.
    """
    def load(n: fx.Node) -> Any:
        if VALUE_KEY not in n.meta:
            raise unsupported(gm, consumer, f"its argument {n.name!r} is a tensor, not a "
                              "Python constant such as a size read from a traced shape")
        return n.meta[VALUE_KEY]

    return fx.node.map_arg(value, load)


def propagate_shapes(gm: fx.GraphModule, input_shape: tuple[int, ...], batch: int) -> None:
    """Run the model once on zeros of shape ``(batch, *input_shape)`` (eval mode, no grad) and
    store every node's output shape in ``node.meta['paizoo_shape']``; training flags are
    restored.
    """
    param = next(iter(gm.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros((batch, *input_shape), device=device, dtype=dtype)
    modes = [(m, m.training) for m in gm.modules()]
    threads = torch.get_num_threads()
    gm.eval()
    try:
        # one sample through a small model: a single thread avoids the OpenMP start-up and
        # spin-wait costs that dominate on a busy machine
        torch.set_num_threads(1)
        with torch.no_grad():
            _ShapeRecorder(gm).run(x)
    except UnsupportedLayerError:
        raise
    except Exception as exc:
        raise GraphEncodingError(
            f"{gm.__class__.__name__} does not run on an input of shape "
            f"{(batch, *input_shape)}: {type(exc).__name__}: {exc}. Check input_shape (one "
            "sample, without the batch dimension, e.g. (3, 32, 32))."
        ) from exc
    finally:
        torch.set_num_threads(threads)
        for m, training in modes:
            m.train(training)


# ---- classification ------------------------------------------------------------------------

def where(node: fx.Node) -> str:
    """The qualified name of the module an fx node belongs to (``''``: the top level)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        last = next(reversed(stack.values()))
        return str(last[0]) if isinstance(last, tuple) else str(next(reversed(stack)))
    return ""


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} ({type(gm.get_submodule(str(node.target))).__name__})"
    if node.op == "call_method":
        return f"Tensor.{node.target}() in module {where(node) or '<top level>'!r}"
    name = getattr(node.target, "__name__", repr(node.target))
    return f"{name}() in module {where(node) or '<top level>'!r}"


def unsupported(gm: fx.GraphModule, node: fx.Node, reason: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"the multipartite graph encoding cannot represent {describe(gm, node)} "
        f"(fx node {node.name!r}): {reason}. Supported on the data path: Conv1d/2d/3d, Linear, "
        "max/average/adaptive pooling, mean/sum over axes, additions, concatenation, "
        "reshapes/slicing/padding, and elementwise or normalisation layers; pass "
        "passthrough=(YourModule,) to treat a custom module as elementwise.")


def unit_shape(node: fx.Node) -> tuple[int, ...]:
    shape = node.meta.get(SHAPE_KEY)
    if shape is None:
        raise RuntimeError(f"no tensor shape recorded for fx node {node.name!r}")
    return tuple(int(v) for v in shape[1:])


def _flat_nodes(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(args, out.append)
    return out


@dataclass
class Plan:
    """Classification of the live nodes of a traced model and the additions' absorptions."""

    kind: dict[fx.Node, str] = field(default_factory=dict)
    dep: dict[fx.Node, bool] = field(default_factory=dict)
    root: dict[fx.Node, fx.Node] = field(default_factory=dict)
    uses: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)
    absorbed: set[fx.Node] = field(default_factory=set)
    live: set[fx.Node] = field(default_factory=set)
    last_use: dict[fx.Node, fx.Node] = field(default_factory=dict)


def _is_tensor_node(node: fx.Node) -> bool:
    return node.meta.get(SHAPE_KEY) is not None or node.op == "placeholder"


def _classify(gm: fx.GraphModule, node: fx.Node, dep_args: list[fx.Node],
              passthrough: tuple[type[nn.Module], ...]) -> str:
    n_dep = len(dep_args)
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        if passthrough and isinstance(m, passthrough):
            return "elementwise"
        if isinstance(m, CONV_MODULES):
            if m.padding_mode != "zeros":
                raise unsupported(gm, node, f"padding_mode={m.padding_mode!r} (only 'zeros')")
            return "conv"
        if isinstance(m, nn.Linear):
            return "linear"
        if isinstance(m, POOL_MODULES):
            if getattr(m, "return_indices", False):
                raise unsupported(gm, node, "return_indices=True")
            return "pool"
        if isinstance(m, nn.Upsample) and m.mode != "nearest":
            raise unsupported(gm, node, f"Upsample mode {m.mode!r} (only 'nearest' is a relabel)")
        if isinstance(m, RELABEL_MODULES):
            return "relabel"
        if isinstance(m, ELEMENTWISE_MODULES):
            return "elementwise"
        raise unsupported(gm, node, "no graph rule for this module type")
    if node.op == "call_method":
        name = str(node.target)
        if name in SHAPE_METHODS:
            return "shape"
        if name in ADD_METHODS or name in INPLACE_ADD_METHODS:
            if name in INPLACE_ADD_METHODS and n_dep >= 2:
                _check_inplace(gm, node)
            return "add" if n_dep >= 2 else "elementwise"
        if name in PRODUCT_METHODS:
            if n_dep >= 2:
                raise unsupported(gm, node, "product of two data-dependent tensors (e.g. "
                                  "squeeze-and-excitation gating or attention)")
            return "elementwise"
        if name in REDUCE_METHODS:
            return "reduce"
        if name in RELABEL_METHODS:
            return "relabel"
        if name in ELEMENTWISE_METHODS:
            if n_dep > 1:
                raise unsupported(gm, node, "elementwise operation of several data tensors")
            return "elementwise"
        raise unsupported(gm, node, "no graph rule for this tensor method")
    if node.op == "call_function":
        fn = node.target
        if fn is getattr:
            if node.args[1] in SHAPE_ATTRIBUTES:
                return "shape"
            raise unsupported(gm, node, f"attribute {node.args[1]!r} of a data tensor")
        if fn in ADD_FUNCTIONS:
            return "add" if n_dep >= 2 else "elementwise"
        if fn in PRODUCT_FUNCTIONS:
            if n_dep >= 2:
                raise unsupported(gm, node, "product of two data-dependent tensors (e.g. "
                                  "squeeze-and-excitation gating or attention)")
            return "elementwise"
        if fn in CONV_FUNCTIONS or fn in LINEAR_FUNCTIONS:
            weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
            if not (isinstance(weight, fx.Node) and weight.op == "get_attr"):
                raise unsupported(gm, node, "functional layer whose weight is not a parameter "
                                  "of the model (computed weights cannot be masked)")
            return "conv" if fn in CONV_FUNCTIONS else "linear"
        if fn in POOL_FUNCTIONS:
            if node.kwargs.get("return_indices"):
                raise unsupported(gm, node, "return_indices=True")
            return "pool"
        if fn in REDUCE_FUNCTIONS:
            return "reduce"
        if fn is F.interpolate:
            mode = node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")
            if mode != "nearest":
                raise unsupported(gm, node, f"interpolation mode {mode!r} (only 'nearest')")
            return "relabel"
        if fn in RELABEL_FUNCTIONS:
            return "relabel"
        if fn in ELEMENTWISE_FUNCTIONS:
            if n_dep > 1:
                raise unsupported(gm, node, "elementwise operation of several data tensors")
            return "elementwise"
        raise unsupported(gm, node, "no graph rule for this function")
    raise unsupported(gm, node, f"fx op {node.op!r}")


def _check_inplace(gm: fx.GraphModule, node: fx.Node) -> None:
    """``a.add_(b)`` mutates ``a``: fx only records it faithfully if ``a`` is not read later."""
    target = node.args[0]
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    if isinstance(target, fx.Node) and any(order[u] > order[node] for u in target.users
                                           if u is not node):
        raise unsupported(gm, node, "in-place addition whose left operand is read afterwards "
                          "(torch.fx does not record the mutation); write `a = a + b`")


def analyse(gm: fx.GraphModule, passthrough: tuple[type[nn.Module], ...] = ()) -> Plan:
    """Classify the live nodes and decide which summands an addition absorbs."""
    plan = Plan()
    nodes = list(gm.graph.nodes)
    output = next(n for n in reversed(nodes) if n.op == "output")
    stack = [output]
    while stack:
        n = stack.pop()
        if n in plan.live:
            continue
        plan.live.add(n)
        stack.extend(n.all_input_nodes)
    seen_input = False
    for node in nodes:
        if node not in plan.live:
            continue
        if node.op == "placeholder":
            if not seen_input:
                plan.kind[node], plan.dep[node], seen_input = "input", True, True
            elif node.args:  # a second argument with a default value
                plan.kind[node], plan.dep[node] = "const", False
            else:
                raise UnsupportedLayerError(
                    f"the model's forward takes a second required argument {node.name!r}; the "
                    "MGE encodes single-input models")
            continue
        if node.op == "get_attr":
            plan.kind[node], plan.dep[node] = "const", False
            continue
        if node.op == "output":
            plan.kind[node], plan.dep[node] = "output", False
            continue
        dep_args = [a for a in _flat_nodes((node.args, node.kwargs)) if plan.dep.get(a)]
        if not dep_args:
            plan.kind[node], plan.dep[node] = "const", False
            continue
        kind = _classify(gm, node, dep_args, passthrough)
        plan.kind[node] = kind
        plan.dep[node] = kind != "shape"
        if kind not in ("shape", "relabel") and not _is_tensor_node(node):
            raise unsupported(gm, node, "the operation does not return one tensor")
    for node in nodes:
        if node not in plan.live or not plan.dep.get(node):
            continue
        if plan.kind[node] == "elementwise":
            src = next(a for a in _flat_nodes((node.args, node.kwargs)) if plan.dep.get(a))
            if unit_shape(node) != unit_shape(src):
                raise unsupported(gm, node, f"an elementwise operation that changes the shape "
                                  f"{unit_shape(src)} -> {unit_shape(node)}")
            plan.root[node] = plan.root[src]
        else:
            plan.root[node] = node
            plan.uses[node] = []
    for node in nodes:
        if node not in plan.live:
            continue
        for a in _flat_nodes((node.args, node.kwargs)):
            plan.last_use[a] = node
        if plan.kind[node] in ("elementwise", "shape"):
            continue
        for a in _flat_nodes((node.args, node.kwargs)):
            if plan.dep.get(a):
                plan.uses[plan.root[a]].append(node)
    for root, uses in plan.uses.items():
        if plan.kind[root] not in ("conv", "linear", "add") or len(uses) != 1:
            continue
        consumer = uses[0]
        if plan.kind[consumer] == "add" and unit_shape(root) == unit_shape(consumer):
            plan.absorbed.add(root)
    return plan


def ntuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return tuple(int(value[0]) for _ in range(n))
        return tuple(int(v) for v in value)
    return tuple(int(value) for _ in range(n))


def conv_padding(padding: Any, kernel: Iterable[int], dilation: Iterable[int]) -> tuple[int, ...]:
    """Left padding per axis (``'same'``: ``d (k - 1) // 2``, as PyTorch; ``'valid'``: 0)."""
    kernel, dilation = tuple(kernel), tuple(dilation)
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    if padding == "valid":
        return tuple(0 for _ in kernel)
    return ntuple(padding, len(kernel))


def prod(shape: Iterable[int]) -> int:
    return int(math.prod(shape))
