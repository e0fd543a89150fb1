"""Spectral helpers: leading singular values, extreme eigenvalues, Laplacian spectra.

Small problems are solved densely (exact, LAPACK); large ones with ARPACK (``svds``/``eigsh``,
Lanczos) or LOBPCG, never by a dense decomposition of a big matrix. BLAS runs single-threaded
inside these helpers: at these sizes threads gain little, and on a loaded machine OpenBLAS's
spinning threads make a 500 x 500 ``eigvalsh`` 10-100 times slower.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator, eigsh, lobpcg, svds

#: matrices whose relevant side is at most this are decomposed densely
DENSE_LIMIT = 1024

F = TypeVar("F", bound=Callable[..., Any])
_CONTROLLER: Any = None


def single_thread_blas(func: F) -> F:
    """Run ``func`` with BLAS limited to one thread (threadpoolctl; no-op if unavailable)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _CONTROLLER
        try:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            limiter = _CONTROLLER.limit(limits=1, user_api="blas")
        except Exception:  # pragma: no cover - threadpoolctl missing or failing
            return func(*args, **kwargs)
        with limiter:
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class SpectralConvergenceWarning(UserWarning):
    """An iterative eigen-solver stopped before reaching its tolerance."""


@single_thread_blas
def top_singular_values(matrix: sp.sparray | sp.spmatrix | np.ndarray | LinearOperator, k: int = 2,
                        dense_limit: int = DENSE_LIMIT) -> np.ndarray:
    """The ``k`` largest singular values, in decreasing order (zeros when the rank is smaller).

    Dense matrices and sparse ones whose smaller side is <= ``dense_limit`` go through the
    eigenvalues of the smaller Gram matrix (B^T B or B B^T); larger ones through ``svds``
    (ARPACK Lanczos bidiagonalisation), which also accepts a :class:`LinearOperator`.
    """
    rows, cols = matrix.shape
    out = np.zeros(k, dtype=np.float64)
    if rows == 0 or cols == 0:
        return out
    small = min(rows, cols)
    if small <= dense_limit and not isinstance(matrix, LinearOperator):
        b = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
        b = b.astype(np.float64, copy=False)
        gram = b.T @ b if cols <= rows else b @ b.T
        eig = np.linalg.eigvalsh(gram)[::-1][:k]
        out[: eig.size] = np.sqrt(np.clip(eig, 0.0, None))
        return out
    if k >= small:
        raise ValueError(f"k={k} singular values of a {rows}x{cols} operator")
    op = matrix if isinstance(matrix, LinearOperator) else sp.csr_array(matrix).astype(np.float64)
    vals = svds(op, k=k, return_singular_vectors=False, random_state=0)
    out[:] = np.sort(np.abs(vals))[::-1]
    return out


Operand = "sp.sparray | sp.spmatrix | LinearOperator"


def _explicit(matrix: object) -> bool:
    return sp.issparse(matrix) or isinstance(matrix, np.ndarray)


@single_thread_blas
def top_abs_eigenvalues(symmetric: sp.sparray | sp.spmatrix | LinearOperator, k: int = 6,
                        dense_limit: int = 2 * DENSE_LIMIT, tol: float = 1e-6) -> np.ndarray:
    """The ``k`` largest |eigenvalues| of a symmetric matrix or operator (its largest singular
    values), decreasing. Lanczos (``eigsh``, relative accuracy ``tol``) above ``dense_limit``."""
    n = symmetric.shape[0]
    if n == 0:
        return np.zeros(0)
    if n <= dense_limit and _explicit(symmetric):
        vals = np.linalg.eigvalsh(sp.csr_array(symmetric).toarray().astype(np.float64))
        return np.sort(np.abs(vals))[::-1][:k]
    k = min(k, n - 1)
    op = symmetric if isinstance(symmetric, LinearOperator) else sp.csr_array(
        symmetric).astype(np.float64)
    v0 = np.ones(n) / math.sqrt(n) + 1e-3 * np.random.default_rng(0).standard_normal(n)
    vals = eigsh(op, k=k, which="LM", return_eigenvectors=False, v0=v0, tol=tol)
    return np.sort(np.abs(vals))[::-1]


def distinct_gap(values: np.ndarray, rtol: float = 1e-5) -> float:
    """First minus second *distinct* value of a decreasing sequence (0 if all are equal).

    Values within ``rtol * values[0]`` of the first count as equal, so the ±lambda pairs of a
    bipartite graph's adjacency do not hide its gap.
    """
    if values.size == 0:
        return math.nan
    first = float(values[0])
    rest = values[values < first - rtol * max(abs(first), 1e-300)]
    return first - float(rest[0]) if rest.size else 0.0


def laplacian(weights: sp.sparray | sp.spmatrix) -> sp.csr_array:
    """L = D - W of a symmetric weight matrix, D = diag(row sums)."""
    w = sp.csr_array(weights).astype(np.float64)
    return sp.csr_array(sp.diags_array(np.asarray(w.sum(axis=1)).ravel()) - w)


@single_thread_blas
def largest_eigenvalue(symmetric: sp.sparray | sp.spmatrix | LinearOperator,
                       dense_limit: int = 2 * DENSE_LIMIT, tol: float = 1e-6) -> float:
    """Largest (algebraic) eigenvalue of a symmetric matrix or operator, e.g. the Laplacian
    spectral radius (Lanczos above ``dense_limit``)."""
    n = symmetric.shape[0]
    if n == 0:
        return math.nan
    if n <= dense_limit and _explicit(symmetric):
        return float(np.linalg.eigvalsh(sp.csr_array(symmetric).toarray())[-1])
    op = symmetric if isinstance(symmetric, LinearOperator) else sp.csr_array(
        symmetric).astype(np.float64)
    vals = eigsh(op, k=1, which="LA", return_eigenvectors=False, tol=tol,
                 v0=np.random.default_rng(0).random(n) + 0.5)
    return float(vals[0])


def ritz_error_bound(values: np.ndarray, residuals: np.ndarray) -> float:
    """A-posteriori bound on the error of the lowest Ritz value ``values[0]`` of a block.

    ``values``: the Ritz values theta_1 <= ... <= theta_b of an orthonormal block, ``residuals``:
    the residual norms ||A v_i - theta_i v_i||. The bound is the smallest of

    * ||r_1|| (Krylov-Weinstein: an eigenvalue lies within ||r_1|| of theta_1), and
    * for each leading cluster theta_1..theta_c (c < b), the quadratic (Kato-Temple type) cluster
      bound (||r_1||^2 + ... + ||r_c||^2) / delta_c, delta_c = (theta_{c+1} - ||r_{c+1}||) -
      theta_c the gap to the rest of the spectrum, estimated from below by the next Ritz pair
      (Kato 1949; Temple 1928; for clusters Mathias 1998, "Quadratic residual bounds for the
      Hermitian eigenvalue problem", SIMAX 19).

    As for every such bound, the block is assumed to hold the lowest eigenvalues (no eigenvalue
    below theta_1 missed by the subspace). Clusters make the quadratic bound useful when the
    lowest two eigenvalues nearly coincide, where the gap theta_2 - theta_1 alone would make it
    useless.
    """
    values = np.asarray(values, dtype=np.float64)
    residuals = np.asarray(residuals, dtype=np.float64)
    bound = float(residuals[0])
    squares = np.cumsum(residuals**2)
    for c in range(1, values.size):
        delta = (values[c] - residuals[c]) - values[c - 1]
        if delta > 0:
            bound = min(bound, float(squares[c - 1] / delta))
    return bound


def _float_operator(matrix: sp.sparray | sp.spmatrix | LinearOperator,
                    dtype: type) -> sp.csr_array | LinearOperator:
    if _explicit(matrix):
        return sp.csr_array(matrix).astype(dtype)
    if matrix.dtype == dtype:
        return matrix
    op = matrix
    return LinearOperator(op.shape, matvec=lambda v: np.asarray(op.matvec(v), dtype=dtype),
                          matmat=lambda v: np.asarray(op.matmat(v), dtype=dtype), dtype=dtype)


@single_thread_blas
def laplacian_lambda2(lap: sp.sparray | sp.spmatrix | LinearOperator, diagonal: np.ndarray, *,
                      dense_limit: int = 1500, rtol: float = 1e-4, maxiter: int = 500,
                      chunk: int = 20, block: int = 4,
                      dtype: type = np.float64) -> tuple[float, bool]:
    """Smallest eigenvalue of a *connected* graph's Laplacian on the complement of the constant
    vector, i.e. lambda_2, and whether the solver converged.

    Dense ``eigvalsh`` up to ``dense_limit`` nodes. Above: LOBPCG (block of ``block`` vectors,
    Jacobi preconditioner ``1/diagonal``, constant vector as constraint; Knyazev 2001), with the
    dense block work in ``dtype`` (float32 halves its memory traffic; its rounding floor, about
    1e-7 * ||L|| on the residual, limits reachable ``rtol`` to about 1e-6). Every ``chunk``
    iterations (at most ``maxiter``) it stops when the a-posteriori bound of
    :func:`ritz_error_bound` on the lowest Ritz value is below ``rtol * theta_1``; a chunk that
    did not halve that bound doubles the next one (restarts lose LOBPCG's search directions).
    The value is an upper bound on lambda_2 in any case (a Rayleigh quotient on the constraint
    space).
    """
    n = lap.shape[0]
    if n < 2:
        return 0.0, True
    block = max(1, min(block, n // 5))
    if n <= 5 * block:
        # scipy's LOBPCG hands such small problems to a dense solver that refuses the
        # constraint: materialise the (matrix-free) operator instead
        dense = sp.csr_array(lap).toarray() if _explicit(lap) else lap @ np.eye(n)
        return float(max(np.linalg.eigvalsh(np.asarray(dense, dtype=np.float64))[1], 0.0)), True
    if n <= dense_limit and _explicit(lap):
        return float(max(np.linalg.eigvalsh(sp.csr_array(lap).toarray())[1], 0.0)), True
    op = _float_operator(lap, dtype)
    x = np.random.default_rng(0).standard_normal((n, block)).astype(dtype)
    y = np.full((n, 1), 1.0 / math.sqrt(n), dtype=dtype)
    precond = sp.diags_array((1.0 / np.where(diagonal > 0, diagonal, 1.0)).astype(dtype))
    done, converged, value, previous = 0, False, math.inf, math.inf
    while done < maxiter:
        steps = min(chunk, maxiter - done)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # tol: no internal stop (a non-positive one would mean scipy's default); the last
            # residual-history row holds the returned (orthonormal) Ritz pairs' residual norms
            vals, vecs, history = lobpcg(op, x, M=precond, Y=y, largest=False, tol=1e-30,
                                         maxiter=steps, retResidualNormsHistory=True)
        done += steps
        order = np.argsort(vals)
        vals, vecs = vals[order].astype(np.float64), vecs[:, order]
        residuals = np.asarray(history[-1], dtype=np.float64).reshape(-1)[order]
        value = float(vals[0])
        bound = ritz_error_bound(vals, residuals)
        if bound <= rtol * max(abs(value), 1e-300):
            converged = True
            break
        if bound > 0.5 * previous:
            # a restart costs LOBPCG its search directions, and scipy returns the iterate of
            # smallest mean residual, which after a restart can be the starting block itself:
            # when a chunk did not halve the bound, the next one runs twice as long
            chunk *= 2
        previous, x = bound, vecs
    return max(value, 0.0), converged


def algebraic_connectivity(weights: sp.sparray | sp.spmatrix, dense_limit: int = 1500,
                           rtol: float = 1e-6, maxiter: int = 2000) -> float:
    """Second-smallest eigenvalue lambda_2 of L = D - W (Fiedler 1973); 0 for a disconnected graph.

    Small graphs: dense ``eigvalsh``; large ones: :func:`laplacian_lambda2` (LOBPCG); a warning
    says when it did not converge (the value is then an upper bound).
    """
    w = sp.csr_array(weights)
    n = w.shape[0]
    if n < 2:
        return 0.0
    if connected_components(w, directed=False)[0] > 1:
        return 0.0
    lap = laplacian(w)
    value, converged = laplacian_lambda2(lap, lap.diagonal(), dense_limit=dense_limit, rtol=rtol,
                                         maxiter=maxiter)
    if not converged:
        warnings.warn(f"LOBPCG for lambda_2 of a {n}-node Laplacian stopped after {maxiter} "
                      "iterations before converging; the value is an upper bound",
                      SpectralConvergenceWarning, stacklevel=2)
    return value
