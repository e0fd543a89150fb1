"""Token-input models for the data-free pruners (SynFlow, NTK-SAP).

Data-free pruners feed a synthetic input instead of data: SynFlow the all-ones tensor, NTK-SAP
Gaussian noise. A model whose input is a tensor of token ids (its first layer an
``nn.Embedding``) cannot take either. paizoo treats every embedding as what it computes, a
linear map from one-hot vectors over its vocabulary to its output, and feeds the synthetic
signal in that one-hot space:

* SynFlow (:func:`all_ones_embeddings`): the all-ones vector over the vocabulary, at every
  position, scaled by ``1/V`` (V = the vocabulary size). The embedding's output is then
  ``(1/V) 1^T |E|``, the mean row of the (linearised, absolute) table at every position: what
  the linearised network computes when each embedding is read as a Linear layer on one-hot
  inputs fed the uniform mixture of all tokens. The synaptic flow runs through every row of the
  table, so embedding rows get scores like any other weights. The factor ``1/V`` scales R and
  every score by the same constant in a positively homogeneous network (no biases, ReLU-like
  activations), so there the ranking is that of the plain all-ones input; it keeps the signal
  at the scale of one token, so that the biases, normalisation epsilons and saturating gates
  (LSTM sigmoids saturate to exactly 1 in float64 beyond ~37, and ``1^T |E|`` grows with V)
  see realistic magnitudes instead of killing the flow.
* NTK-SAP (:class:`RandomTokens`): the data-free stand-in for data is random data; for a token
  input that is token ids drawn uniformly from the embedding's vocabulary (the analogue of
  NTK-SAP's ``x ~ N(0, I)``), drawn once per draw and embedding and shared by the clean and the
  perturbed evaluation. Embedding rows no draw reads get score 0.

The model itself receives placeholder token ids (``int64``, one id that is not a padding index)
of shape ``(batch, *input_shape)``;
every embedding's output is replaced by a forward hook, so positional embeddings read the same
synthetic signal (all ones / random positions) as token embeddings. A model is a token-input
model when it has an embedding and refuses a float input (:func:`takes_token_ids`); a model
whose embeddings read something else (learnt positions looked up by index next to an image
input) takes the usual float input, its embeddings untouched. A token-input model whose forward
does not accept the placeholder ids raises :class:`~paizoo.errors.UnsupportedLayerError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedLayerError

EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)


def embedding_names(model: nn.Module) -> list[str]:
    """Paths of the ``nn.Embedding``/``nn.EmbeddingBag`` modules of ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, EMBEDDING_TYPES)]


def takes_token_ids(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype,
                    device: torch.device) -> bool:
    """Whether ``model`` is a token-input model: it has an embedding and its forward refuses a
    float input of ``input_shape`` (an embedding that reads the input needs integer ids). A
    model whose embeddings read something else (learnt positions looked up by index next to an
    image input) is not one, and gets the float input like any other."""
    if not embedding_names(model):
        return False
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=dtype, device=device))
    except (RuntimeError, TypeError, ValueError, IndexError):
        return True
    finally:
        model.train(was_training)
    return False


def token_placeholder(model: nn.Module, batch: int, input_shape: tuple[int, ...],
                      device: torch.device) -> torch.Tensor:
    """Token ids of shape ``(batch, *input_shape)`` (``int64``), all equal to the smallest id
    that is no embedding's ``padding_idx`` (so a model that masks its padding positions does
    not mask every position)."""
    padding = {m.padding_idx for m in model.modules()
               if isinstance(m, EMBEDDING_TYPES) and m.padding_idx is not None}
    token = next(i for i in range(len(padding) + 1) if i not in padding)
    return torch.full((batch, *input_shape), token, dtype=torch.long, device=device)


@contextmanager
def _hooked(model: nn.Module, hook: Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]
            ) -> Iterator[None]:
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, EMBEDDING_TYPES)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _ones_signal(module: nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
    return module.weight.mean(0).expand_as(out).contiguous()


def all_ones_embeddings(model: nn.Module) -> Any:
    """Context manager: every embedding outputs ``(1/V) 1^T E`` (its table's mean row)."""
    return _hooked(model, _ones_signal)


class RandomTokens:
    """Context manager: every ``nn.Embedding`` looks up uniformly random ids of its vocabulary.

    The ids are drawn from ``generator`` the first time an embedding runs on an input shape and
    reused until :meth:`redraw` (one draw of NTK-SAP evaluates the network several times on the
    same input).
    """

    def __init__(self, model: nn.Module, generator: torch.Generator) -> None:
        self.model = model
        self.generator = generator
        self._ids: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        self._context: Any = None

    def redraw(self) -> None:
        self._ids.clear()

    def _hook(self, module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        if not isinstance(module, nn.Embedding):
            raise UnsupportedLayerError(
                f"NTK-SAP feeds random token ids to nn.Embedding layers but not to "
                f"{type(module).__name__}; prune this model with SynFlow or a data-driven pruner")
        tokens = args[0]
        key = (id(module), tuple(tokens.shape))
        if key not in self._ids:
            ids = torch.randint(module.num_embeddings, tuple(tokens.shape),
                                generator=self.generator)
            self._ids[key] = ids.to(tokens.device)
        return F.embedding(self._ids[key], module.weight, module.padding_idx)

    def __enter__(self) -> RandomTokens:
        self._context = _hooked(self.model, self._hook)
        self._context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)


def token_forward_error(pruner: str, model: nn.Module, names: list[str], shape: tuple[int, ...],
                        exc: Exception) -> UnsupportedLayerError:
    """The error for a token model whose forward fails on placeholder token ids."""
    return UnsupportedLayerError(
        f"{pruner} treats {type(model).__name__} as a token-input model (it has the embedding(s) "
        f"{', '.join(names[:3])}) and feeds it token ids of shape {shape} (int64), but its "
        f"forward failed: {exc}. paizoo's data-free pruners support models whose input is one "
        "tensor of token ids; use a data-driven pruner (data= with integer tokens) otherwise")


def ones_forward(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device, pruner: str = "SynFlow",
                 token_input: bool | None = None) -> Any:
    """``model`` on SynFlow's all-ones input of one sample: ``ones((1, *input_shape))``, or for a
    token model (``token_input``, default: :func:`takes_token_ids`) placeholder ids with every
    embedding fed the all-ones one-hot signal."""
    if token_input is None:
        token_input = takes_token_ids(model, input_shape, dtype, device)
    if not token_input:
        return model(torch.ones((1, *input_shape), dtype=dtype, device=device))
    names = embedding_names(model)
    tokens = token_placeholder(model, 1, input_shape, device)
    with all_ones_embeddings(model):
        return call_token_model(pruner, model, names, lambda: model(tokens), tuple(tokens.shape))


def call_token_model(pruner: str, model: nn.Module, names: list[str], run: Callable[[], Any],
                     shape: tuple[int, ...]) -> Any:
    """``run()``, turning a failure of the model's own forward into a clear paizoo error."""
    from ..errors import PaizooError

    try:
        return run()
    except PaizooError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise token_forward_error(pruner, model, names, shape, exc) from exc
