"""Forward passes whose activations carry a power-of-two exponent: float32 without overflow.

Under :class:`ScaledForward` every tensor computed from the network's input is held as a pair
``(m, k)``: a float32 *mantissa* tensor ``m`` and an integer exponent ``k``, its value being
``m * 2**k``. Tensors that do not depend on the input (parameters, buffers, constants a module
creates) are plain values (exponent 0). Each torch operation on such pairs is rewritten so that
it computes, exactly, the mantissa of the unscaled result:

* homogeneous, linear ops (views, ReLU, pooling, dropout in eval, ``mean``) act on ``m`` and keep
  ``k``;
* affine ops (conv/linear with bias, eval-mode batch norm, additions, ``cat``) first bring every
  operand to one common exponent ``K`` (the largest), multiplying each by ``2**(k_i - K)``:
  ``conv(m, W, b * 2**-K)``, ``batch_norm(m, mean * 2**-K, var, gamma, beta * 2**-K)``, the
  two branches of a residual ``x + f(x)``;
* products add exponents (``matmul``/``mul`` of two activations, attention logits, whose
  scale goes into ``scaled_dot_product_attention``'s ``scale``);
* normalisations (layer/group/RMS norm, batch norm on batch statistics) are invariant to the
  scale of their input up to their epsilon: ``layer_norm(m, eps * 2**(-2k))``, exponent 0;
* any other op (GELU, softmax, sigmoid, ``item()``, comparisons, ...) is evaluated on the value
  ``m * 2**k`` itself, which is done only while ``|k| <= 60`` (the value then fits float32 with
  room to spare); beyond that :class:`~paizoo.errors.ScoreError` is raised rather than a guess.

Multiplying a float32 number by a power of two changes its exponent field only, so every rewrite
above is exact except where a product falls below 2^-126 (then it is rounded like any float32
underflow; such an operand is at least 2^126 times smaller than the largest term it is added
to). After every op that can grow values (conv, linear, batch norm, sums, products) the result
is renormalised when its largest magnitude leaves [2^-32, 2^32]: ``m <- m * 2**-s``, ``k <- k +
s`` for the ``s`` that brings it into [1, 2). Stored mantissas therefore stay below 2^33 and one
op on them would need weights beyond 2^90 / fan-in to overflow; a non-finite intermediate is
reported as a :class:`~paizoo.errors.ScoreError` (never passed on).

The mantissas form an ordinary autograd graph: the exponents are Python integers, constant for
autograd, so ``d(sum m_out)/d theta = 2**-k_out * dR/d theta`` with one common factor for every
parameter. In-place ops keep the target tensor's exponent where they can (``x += y`` brings
``y`` to ``x``'s exponent) and renormalise a target that is not a view in place, updating the
exponent of every registered view of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from ..errors import ScoreError

#: stored mantissas are renormalised when their largest magnitude leaves [2^-LOW, 2^HIGH]
RENORM_EXP = 32
#: ops without an exact rule are evaluated on values m * 2^k only for |k| <= this
MATERIALISE_EXP = 60

# dtype conversions: exact between float32 and float64, anything else works on values
_CONVERT = frozenset({"to", "type_as", "float", "double", "type"})
# ops that act on one activation linearly and positively homogeneously and cannot grow it:
# the mantissa goes through, the exponent is kept
_PASS = frozenset({
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous",
    "__getitem__", "expand", "expand_as", "squeeze", "unsqueeze", "chunk", "split", "unbind",
    "tensor_split", "split_with_sizes", "clone", "narrow", "select", "movedim", "moveaxis",
    "view_as", "reshape_as", "repeat", "flip", "roll", "relu", "relu_",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "_max_pool1d", "_max_pool2d",
    "_max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices", "_adaptive_max_pool1d", "_adaptive_max_pool2d",
    "_adaptive_max_pool3d", "dropout", "dropout1d", "dropout2d", "dropout3d", "feature_dropout",
    "alpha_dropout", "pixel_shuffle", "pixel_unshuffle", "mean", "amax", "channel_shuffle",
    "native_channel_shuffle", "swapaxes", "swapdims", "__get__", "as_strided", "diagonal",
    "tril", "triu", "__neg__", "neg", "detach", "cpu", "cuda", "interpolate", "upsample",
    "upsample_nearest", "upsample_bilinear",
})
# reductions that add up many entries (may grow by the count): pass, then renormalise
_SUM = frozenset({"sum", "nansum"})
# elementwise or broadcast additions/subtractions of any number of operands
_ADD = frozenset({"add", "__add__", "__radd__", "sub", "__sub__", "__rsub__", "subtract"})
_IADD = frozenset({"add_", "__iadd__", "sub_", "__isub__"})
_MUL = frozenset({"mul", "__mul__", "__rmul__", "multiply", "matmul", "__matmul__",
                  "__rmatmul__", "bmm", "mm", "mv", "einsum", "outer", "kron"})
_IMUL = frozenset({"mul_", "__imul__"})
_DIV = frozenset({"div", "__truediv__", "true_divide", "divide"})
_CAT = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack"})
_AFFINE = {  # name -> (index of the bias argument, its keyword)
    "linear": (2, "bias"), "conv1d": (2, "bias"), "conv2d": (2, "bias"), "conv3d": (2, "bias"),
    "conv_transpose1d": (2, "bias"), "conv_transpose2d": (2, "bias"),
    "conv_transpose3d": (2, "bias"),
}
_NORM = {  # name -> (index of eps, keyword of eps); output exponent 0
    "layer_norm": (4, "eps"), "group_norm": (4, "eps"), "rms_norm": (3, "eps"),
}
# value-free queries and constructors: the result does not depend on the activation's values
_QUERY = frozenset({
    "size", "dim", "numel", "ndimension", "nelement", "is_contiguous", "stride",
    "storage_offset", "element_size", "is_floating_point", "is_complex", "get_device",
    "__len__", "data_ptr", "untyped_storage", "has_names", "__hash__", "zeros_like",
    "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "new_zeros", "new_ones",
    "new_empty", "new_full", "new_tensor", "requires_grad_", "register_hook", "retain_grad",
    "is_nonzero",
})


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", "") or ""


def _exp_of_max(value: float) -> int:
    """``s`` with ``value * 2**-s`` in [1, 2) (``value > 0`` finite)."""
    return math.frexp(value)[1] - 1


def _pow2(n: int) -> float:
    """2.0**n as a Python float; 0.0 far below float32's range (the product underflows anyway)."""
    return 0.0 if n < -1100 else math.ldexp(1.0, n)


def _max_abs(t: torch.Tensor) -> float:
    if t.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(t.detach())
    return max(-float(lo), float(hi))


class ScaledForward(TorchFunctionMode):
    """A torch function mode evaluating a network on ``(mantissa, exponent)`` activations.

    Use :meth:`run`: it registers the input (exponent 0), evaluates ``model(x)`` and returns the
    output's mantissa, renormalised to a largest magnitude in [1, 2), and its exponent.
    """

    def __init__(self) -> None:
        super().__init__()
        self._exp: dict[int, tuple[torch.Tensor, int]] = {}
        self._views: dict[int, list[torch.Tensor]] = {}

    # ---- bookkeeping -------------------------------------------------------------------------
    def run(self, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        self._exp.clear()
        self._views.clear()
        self._set(x, 0)
        try:
            with self:
                out = model(x)
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"{type(model).__name__} returned a {type(out).__name__}; SynFlow needs a "
                    "model whose forward() returns one tensor")
            k = self.exponent(out)
            if k is None:  # the output does not depend on the input
                k = 0
            out, k = self._renormalise(out, k, "the output", force=True)
            return out, k
        finally:
            self._exp.clear()
            self._views.clear()

    def exponent(self, t: object) -> int | None:
        if not isinstance(t, torch.Tensor):
            return None
        entry = self._exp.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else None

    def _set(self, t: torch.Tensor, k: int) -> None:
        self._exp[id(t)] = (t, k)
        base = t._base
        if base is not None:
            self._views.setdefault(id(base), []).append(t)

    def _register(self, result: Any, k: int) -> Any:
        for t in tree_flatten(result)[0]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self._set(t, k)
        return result

    def _renormalise(self, t: torch.Tensor, k: int, what: str, *,
                     force: bool = False) -> tuple[torch.Tensor, int]:
        mx = _max_abs(t)
        if not math.isfinite(mx):
            raise ScoreError(
                f"SynFlow's scaled float32 forward produced a non-finite value in {what} (the "
                "weights are too large for one float32 operation, or they are NaN/inf); use "
                "precision='float64'")
        if mx == 0.0:
            return t, k
        s = _exp_of_max(mx)
        if s == 0 or (not force and -RENORM_EXP <= s <= RENORM_EXP):
            return t, k
        return t * _pow2(-s), k + s

    def _materialise(self, t: torch.Tensor, k: int, what: str) -> torch.Tensor:
        if k == 0:
            return t
        if abs(k) > MATERIALISE_EXP:
            raise ScoreError(
                f"SynFlow's scaled float32 forward needs the values of an activation of "
                f"magnitude 2^{k} for {what!r}, an operation without an exact power-of-two rule, "
                "and they do not fit float32 safely; use precision='float64'")
        return t * _pow2(k)

    def _magnitude(self, t: object) -> int | None:
        """Exponent ``e`` of an operand's largest magnitude (in [2^e, 2^(e+1))): of ``m * 2**k``
        for an activation, of the value for a constant (tensor or number); None when it is zero
        everywhere, ``None`` or not a number."""
        k = self.exponent(t)
        if isinstance(t, torch.Tensor):
            if not t.is_floating_point():
                return None
            mx = _max_abs(t)
            if not math.isfinite(mx):
                raise ScoreError("SynFlow: a parameter, buffer or activation is not finite")
            return _exp_of_max(mx) + (k or 0) if mx > 0 else None
        if isinstance(t, (int, float)) and not isinstance(t, bool) and t != 0:
            return _exp_of_max(abs(float(t)))
        return None

    def _align(self, t: object, k_target: int, what: str) -> object:
        """``t`` (an activation or a constant) in units of ``2**k_target``."""
        if isinstance(t, bool) or not isinstance(t, (torch.Tensor, int, float)):
            return t
        if isinstance(t, torch.Tensor) and not t.is_floating_point():
            return t
        k = self.exponent(t)
        shift = (0 if k is None else k) - k_target
        if shift == 0:
            return t
        if shift > 0:  # a mantissa far below its exponent (or zero), raised to the target
            magnitude = self._magnitude(t)
            if magnitude is None:
                return t
            if magnitude > k_target:  # pragma: no cover - callers align to the largest operand
                raise ScoreError(f"SynFlow's scaled float32 forward cannot align the operands "
                                 f"of {what!r}; use precision='float64'")
            while shift > 100:  # the values end below 2^2; the factor in float32-sized steps
                t, shift = t * _pow2(100), shift - 100
        return t * _pow2(shift)

    def _target(self, operands: list[object]) -> int:
        """The exponent to align ``operands`` to: the largest magnitude among them, so that
        aligning only ever scales down. A lone activation next to zero constants keeps its own
        exponent (no pass over its values)."""
        acts = [a for a in operands if self.exponent(a) is not None]
        consts = [e for e in (self._magnitude(a) for a in operands if self.exponent(a) is None)
                  if e is not None]
        if len(acts) == 1 and not consts:
            return self.exponent(acts[0])  # type: ignore[return-value]
        exps = consts + [e for e in (self._magnitude(a) for a in acts) if e is not None]
        return max(exps) if exps else max(self.exponent(a) for a in acts)  # type: ignore[type-var]

    def _rescale_inplace(self, t: torch.Tensor, k_old: int, k_new: int, what: str, *,
                         checked: bool = False) -> None:
        """Multiply ``t`` by ``2**(k_old - k_new)`` in place and record exponent ``k_new`` for it
        and its registered views (refused for a view: its base would be left half rescaled).
        ``checked``: the caller knows the result stays below 2^2."""
        if t._base is not None:
            raise ScoreError(
                f"SynFlow's scaled float32 forward cannot rescale a view in place ({what}); "
                "use precision='float64'")
        if not checked and k_old - k_new > MATERIALISE_EXP:
            raise ScoreError(f"SynFlow's scaled float32 forward cannot bring an activation of "
                             f"magnitude 2^{k_old} to values for {what!r}; use "
                             "precision='float64'")
        shift = k_old - k_new
        while shift > 0:  # in steps a float32 factor can hold
            step = min(shift, 100)
            t.mul_(_pow2(step))
            shift -= step
        if shift < 0:
            t.mul_(_pow2(shift))
        self._relabel(t, k_old, k_new)

    def _relabel(self, t: torch.Tensor, k_old: int, k_new: int) -> None:
        self._set(t, k_new)
        for v in self._views.get(id(t), []):
            if self.exponent(v) == k_old:
                self._set(v, k_new)

    def _check_inplace(self, t: torch.Tensor, k: int, what: str) -> None:
        """After an in-place op: raise on non-finite values, renormalise a large target."""
        mx = _max_abs(t)
        if not math.isfinite(mx):
            raise ScoreError(f"SynFlow's scaled float32 forward overflowed in {what!r}; use "
                             "precision='float64'")
        if mx >= _pow2(RENORM_EXP + 1):
            self._rescale_inplace(t, k, k + _exp_of_max(mx), what)

    # ---- the rules ---------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = tree_flatten((args, kwargs))[0]
        if not any(self.exponent(t) is not None for t in flat):
            return func(*args, **kwargs)
        name = _name(func)
        if name in _QUERY:
            return func(*args, **kwargs)
        first = self.exponent(args[0]) if args else None
        only_first = first is not None and sum(self.exponent(t) is not None for t in flat) == 1
        inplace = (name.endswith("_") and not name.endswith("__")) or name.startswith("__i") \
            or kwargs.get("inplace") is True or name == "__setitem__"
        if only_first and (name in _PASS or (name == "pad" and not _pad_value(args, kwargs))):
            return self._register(func(*args, **kwargs), first)
        if only_first and name in _CONVERT:
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and out.dtype in (torch.float32, torch.float64):
                return self._register(out, first)
        if only_first and name in _SUM:
            out, k = self._renormalise(func(*args, **kwargs), first, name)
            return self._register(out, k)
        if name in _ADD:
            return self._add(func, args, kwargs, name)
        if name in _IADD or name == "__setitem__":
            return self._add_inplace(func, args, kwargs, name)
        if name in _MUL or name in _IMUL or name in _DIV:
            return self._product(func, args, kwargs, name, inplace)
        if name in _CAT:
            return self._cat(func, args, kwargs, name)
        if only_first and name in _AFFINE:
            return self._affine(func, args, kwargs, name)
        if only_first and func is torch.nn.functional.batch_norm:
            return self._batch_norm(func, args, kwargs)
        if only_first and name in _NORM:
            return self._norm(func, args, kwargs, name)
        if name == "scaled_dot_product_attention":
            return self._attention(func, args, kwargs)
        return self._generic(func, args, kwargs, name, inplace)

    def _add(self, func, args, kwargs, name):
        other = args[1] if len(args) > 1 else kwargs.get("other")
        target = self._target([args[0], other])
        new_args = (self._align(args[0], target, name),
                    *(self._align(a, target, name) if i == 0 else a
                      for i, a in enumerate(args[1:])))
        new_kwargs = {k: (self._align(v, target, name) if k == "other" else v)
                      for k, v in kwargs.items()}
        out, k = self._renormalise(func(*new_args, **new_kwargs), target, name)
        return self._register(out, k)

    def _add_inplace(self, func, args, kwargs, name):
        target_t = args[0]
        k_t = self.exponent(target_t)
        if k_t is None:  # a constant receives an activation: work on values
            return self._generic(func, args, kwargs, name, True)
        pos = 2 if name == "__setitem__" else 1
        other = args[pos] if len(args) > pos else kwargs.get("other")
        exps = [e for e in (self._magnitude(target_t), self._magnitude(other)) if e is not None]
        if exps and max(exps) != k_t:  # the target's exponent becomes the largest magnitude
            if self._magnitude(target_t) is None:  # all zero: only the label changes
                self._relabel(target_t, k_t, max(exps))
            else:
                self._rescale_inplace(target_t, k_t, max(exps), name, checked=True)
            k_t = max(exps)
        new_args = tuple(self._align(a, k_t, name) if i == pos else a
                         for i, a in enumerate(args))
        new_kwargs = {k: (self._align(v, k_t, name) if k == "other" else v)
                      for k, v in kwargs.items()}
        out = func(*new_args, **new_kwargs)
        self._check_inplace(target_t, k_t, name)
        return out

    def _product(self, func, args, kwargs, name, inplace):
        if name in _DIV:
            num = self.exponent(args[0]) or 0
            den = self.exponent(args[1] if len(args) > 1 else kwargs.get("other")) or 0
            k = num - den
        else:
            k = sum(e for e in (self.exponent(t) for t in tree_flatten((args, kwargs))[0])
                    if e is not None)
        if inplace:
            k_t = self.exponent(args[0])
            if k_t is None:
                return self._generic(func, args, kwargs, name, True)
            out = func(*args, **kwargs)
            self._relabel(args[0], k_t, k)
            self._check_inplace(args[0], k, name)
            return out
        out, k = self._renormalise(func(*args, **kwargs), k, name)
        return self._register(out, k)

    def _cat(self, func, args, kwargs, name):
        tensors = list(args[0] if args else kwargs["tensors"])
        target = self._target(tensors)
        aligned = [self._align(t, target, name) for t in tensors]
        if args:
            out = func(aligned, *args[1:], **kwargs)
        else:
            out = func(**{**kwargs, "tensors": aligned})
        return self._register(out, target)

    def _affine(self, func, args, kwargs, name):
        index, key = _AFFINE[name]
        args = list(args)
        in_args = index < len(args)
        bias = args[index] if in_args else kwargs.get(key)
        target = self._target([args[0], bias])
        args[0] = self._align(args[0], target, name)
        if bias is not None:
            if in_args:
                args[index] = self._align(bias, target, name)
            else:
                kwargs = {**kwargs, key: self._align(bias, target, name)}
        out, k = self._renormalise(func(*args, **kwargs), target, name)
        return self._register(out, k)

    def _batch_norm(self, func, args, kwargs):
        names = ["input", "running_mean", "running_var", "weight", "bias", "training",
                 "momentum", "eps"]
        bound = {**dict(zip(names, args, strict=False)), **kwargs}
        if bound.get("training", False) or bound.get("running_mean") is None:
            # batch statistics: invariant to the input's scale like layer norm
            bound.update(running_mean=None, running_var=None, training=True)
            return self._norm(func, (), bound, "batch_norm", eps_key="eps")
        # (x - mean) / sqrt(var + eps) * gamma + beta: x, mean and beta are in the input's units
        target = self._target([bound["input"], bound["running_mean"], bound.get("bias")])
        for key in ("input", "running_mean", "bias"):
            if bound.get(key) is not None:
                bound[key] = self._align(bound[key], target, "batch_norm")
        out, k = self._renormalise(func(**bound), target, "batch_norm")
        return self._register(out, k)

    def _norm(self, func, args, kwargs, name, eps_key=None):
        index = -1
        if eps_key is None:
            index, eps_key = _NORM[name]
        args = list(args)
        source = args[0] if args else kwargs["input"]
        k = self.exponent(source)
        eps = args[index] if 0 <= index < len(args) else kwargs.get(eps_key)
        if eps is None:
            eps = torch.finfo(source.dtype).eps if name == "rms_norm" else 1e-5
        if -k > MATERIALISE_EXP:
            raise ScoreError(
                f"SynFlow's scaled float32 forward reached {name} with activations of magnitude "
                f"2^{k}, too small next to its epsilon; use precision='float64'")
        # norm(m * 2^k; eps) = norm(m; eps * 2^-2k): the output does not depend on the scale
        scaled_eps = float(eps) * _pow2(-2 * k)
        if 0 <= index < len(args):
            args[index] = scaled_eps
        else:
            kwargs = {**kwargs, eps_key: scaled_eps}
        return self._register(func(*args, **kwargs), 0)

    def _attention(self, func, args, kwargs):
        names = ["query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale"]
        bound = {**dict(zip(names, args, strict=False)), **kwargs}
        logit_exp = (self.exponent(bound["query"]) or 0) + (self.exponent(bound["key"]) or 0)
        if logit_exp > 2 * MATERIALISE_EXP:
            raise ScoreError(
                f"SynFlow's scaled float32 forward reached attention logits of magnitude "
                f"2^{logit_exp}; use precision='float64'")
        scale = bound.get("scale")
        if scale is None:
            scale = 1.0 / math.sqrt(bound["query"].shape[-1])
        # softmax(q k^T * scale): the logits' exponent moves into the scale; the output is a
        # convex combination of the values, in the values' units
        bound["scale"] = float(scale) * _pow2(logit_exp)
        out = func(**bound)
        return self._register(out, self.exponent(bound["value"]) or 0)

    def _generic(self, func, args, kwargs, name, inplace):
        target = args[0] if inplace and args and isinstance(args[0], torch.Tensor) else None
        if target is not None and self.exponent(target) not in (None, 0):
            self._rescale_inplace(target, self.exponent(target), 0, name)

        def value(t: object) -> object:
            k = self.exponent(t)
            if k is None or t is target:
                return t
            return self._materialise(t, k, name)  # type: ignore[arg-type]

        new_args, new_kwargs = tree_map(value, (args, kwargs))
        out = func(*new_args, **new_kwargs)
        if target is not None:
            self._set(target, 0)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(
                    torch.isfinite(t.detach()).all()):
                raise ScoreError(f"SynFlow's scaled float32 forward produced a non-finite value "
                                 f"in {name!r}; use precision='float64'")
        return self._register(out, 0)


def _pad_value(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    value = args[3] if len(args) > 3 else kwargs.get("value")
    return float(value or 0.0) if mode == "constant" else 0.0
