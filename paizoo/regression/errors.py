"""Exceptions of :mod:`paizoo.regression` (all :class:`paizoo.errors.PaizooError`)."""

from __future__ import annotations

from ..errors import PaizooError


class RegressionError(PaizooError, ValueError):
    """Bad input to the accuracy-drop regression or ranking tools."""


class TableError(RegressionError):
    """A metrics table does not follow the schema of :mod:`paizoo.regression.schema`."""


class PredictorFileError(RegressionError):
    """A predictor file is missing, not a paizoo predictor, or holds untrusted types."""
