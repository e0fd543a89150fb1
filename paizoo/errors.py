"""Exceptions raised by paizoo.

Every error names the problem and, where there is one, the fix. They subclass the closest
built-in exception so that callers catching ``ValueError`` or ``FileNotFoundError`` keep working.
"""

from __future__ import annotations


class PaizooError(Exception):
    """Base class of every paizoo error."""


class SparsityError(PaizooError, ValueError):
    """A sparsity, density or compression value is missing, ambiguous or out of range."""


class UnknownPrunerError(PaizooError, ValueError):
    """A pruner name is not in the registry."""


class UnknownModelError(PaizooError, ValueError):
    """A model name is not in the model zoo and is not a ``timm:``/``torchvision:`` name."""


class ModelConfigError(PaizooError, ValueError):
    """A model cannot be built with the given arguments (e.g. an input too small for it)."""


class MissingDataError(PaizooError, ValueError):
    """A data-driven pruner was called without data, or the data has the wrong form."""


class MaskMismatchError(PaizooError, ValueError):
    """A mask does not fit a model (names or shapes differ)."""


class NoPrunableParametersError(PaizooError, ValueError):
    """The model (after include/exclude filters) has no prunable parameter."""


class CoverageError(PaizooError, ValueError):
    """A parameter cannot be pruned as asked: an unknown ``cover=`` kind, or a parametrized
    weight whose mask would not be exact on the weight the module computes."""


class ScoreError(PaizooError, ValueError):
    """A pruner produced unusable scores (NaN, wrong shape, missing layers)."""


class UnsupportedLayerError(PaizooError, NotImplementedError):
    """An operation or module cannot be represented (e.g. by a graph encoder)."""


class UnknownDatasetError(PaizooError, ValueError):
    """A dataset name is not registered (the message lists the known names)."""


class DatasetFormatError(PaizooError, ValueError):
    """A dataset file exists but is not in the expected format (bad magic, truncated, unsafe)."""


class GraphEncodingError(PaizooError, ValueError):
    """Bad arguments to a graph encoder (input shape, encoding kind, a model that does not run)."""


class DatasetNotFoundError(PaizooError, FileNotFoundError):
    """A dataset's files were not found in any of the searched locations."""


class PrunerOptionError(PaizooError, ValueError, TypeError):
    """A pruner option is unknown or has a bad value (a ``TypeError`` too, as Python raises for
    an unexpected keyword argument)."""


class MaskFileError(PaizooError, ValueError):
    """A mask file cannot be read: not a safetensors file, truncated, or not a paizoo mask."""


class DeviceError(PaizooError, RuntimeError):
    """A device name is not a PyTorch device, or the device is not available here."""
