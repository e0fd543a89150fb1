"""Vectorised graph algorithms on scipy.sparse CSR graphs (no Python loop over nodes or edges).

The unrolled graph of a CNN has 10^7-10^9 edges; converting it to igraph or networkx alone costs
microseconds per edge. These routines work directly on CSR arrays with numpy and
``scipy.sparse.csgraph`` and are tested against igraph/networkx on small graphs:

* :func:`undirected_pattern` - the simple undirected graph of a directed adjacency;
* :func:`core_numbers` - k-core numbers by batched peeling (Batagelj & Zaversnik 2003);
* :func:`bridges_and_articulation_points` - Tarjan's low-link values from one
  ``csgraph.depth_first_order`` pass, with subtree minima by sparse-table range queries;
* :func:`two_hop_sizes` / :func:`mean_two_hop_size` - |{v} u N(v) u N(N(v))| (out-direction),
  exactly by chunked boolean sparse products, or estimated from a stratified node sample when the
  number of 2-paths exceeds a work budget;
* :func:`motif4_estimate` - number of connected induced 4-node subgraphs by 3-path sampling
  (Jha, Seshadhri & Pinar, WWW 2015).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, depth_first_order


def canonical_csr(adjacency: sp.sparray | sp.spmatrix) -> sp.csr_array:
    """A CSR array whose ``indptr`` and ``indices`` share one dtype.

    scipy's ``tocoo``/``triu``/... reject CSR arrays with int64 ``indptr`` and int32 ``indices``
    (the layout of :func:`paizoo.graph.csr_from_coo`); the data and structure are not copied when
    they already agree.
    """
    a = sp.csr_array(adjacency)
    if a.indptr.dtype != a.indices.dtype:
        fits = max(a.nnz, a.shape[0], a.shape[1]) < np.iinfo(np.int32).max
        dtype = np.int32 if fits else np.int64
        a = sp.csr_array((a.data, a.indices.astype(dtype, copy=False),
                          a.indptr.astype(dtype, copy=False)), shape=a.shape)
    return a


def undirected_pattern(adjacency: sp.sparray | sp.spmatrix) -> sp.csr_array:
    """The simple undirected graph of ``adjacency``: pattern of A + A^T (every stored entry is an
    edge, explicit zeros included), no self-loops, sorted indices, ``int8`` ones as data."""
    a = canonical_csr(adjacency)
    n = a.shape[0]
    pattern = sp.csr_array((np.ones(a.nnz, dtype=np.int8), a.indices, a.indptr), shape=a.shape)
    if not pattern.has_canonical_format:
        pattern.sum_duplicates()
    # A^T by counting sort has sorted rows; the sum of two canonical CSR arrays is canonical
    u = sp.csr_array(pattern + sp.csr_array(pattern.T))
    if np.any(u.diagonal()):  # self-loops: drop them
        rows = np.repeat(np.arange(n, dtype=u.indices.dtype), np.diff(u.indptr))
        keep = u.indices != rows
        indptr = np.zeros(n + 1, dtype=u.indptr.dtype)
        np.cumsum(np.bincount(rows[keep], minlength=n), out=indptr[1:])
        u = sp.csr_array((u.data[keep], u.indices[keep], indptr), shape=u.shape)
    u.data = np.ones(u.nnz, dtype=np.int8)
    u.has_sorted_indices = True
    return u


def _traversal_view(u: sp.csr_array) -> sp.csr_array:
    """``u`` with float64 data as a zero-stride view, so that scipy.sparse.csgraph (which converts
    data to float64 but reads only the structure for traversals) copies nothing."""
    ones = np.broadcast_to(np.float64(1.0), (u.nnz,))
    return sp.csr_array((ones, u.indices, u.indptr), shape=u.shape)


def weak_components(u: sp.csr_array) -> tuple[int, np.ndarray]:
    """Connected components of a *symmetric* pattern (Pearce's strong-component algorithm equals
    the weak one there and needs no transpose)."""
    return connected_components(_traversal_view(u), directed=True, connection="strong")


def gather_rows(indptr: np.ndarray, indices: np.ndarray,
                rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated column indices of ``rows`` and, for each, the position of its row in
    ``rows``."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=indices.dtype), np.empty(0, dtype=np.int64)
    owner = np.repeat(np.arange(rows.size), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return indices[np.repeat(starts, lengths) + offsets], owner


# ---- k-core ---------------------------------------------------------------------------------

def core_numbers(u: sp.csr_array) -> np.ndarray:
    """Core number of every node of the simple undirected graph ``u``.

    The k-core is the largest subgraph whose nodes all have degree >= k; a node's core number is
    the largest k whose k-core contains it. Peeling removes, for k = 0, 1, ..., all nodes of
    current degree <= k at once and repeats on the neighbours whose degree drops to <= k, so each
    edge is touched once.
    """
    n = u.shape[0]
    indptr, indices = u.indptr, u.indices
    degree = np.diff(indptr).astype(np.int64)
    core = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    remaining = n
    k = 0
    while remaining:
        k = max(k, int(degree[alive].min()))
        frontier = np.flatnonzero(alive & (degree <= k))
        while frontier.size:
            core[frontier] = k
            alive[frontier] = False
            remaining -= frontier.size
            neighbours, _ = gather_rows(indptr, indices, frontier)
            neighbours = neighbours[alive[neighbours]]
            if neighbours.size == 0:
                break
            # unbuffered decrement (repeats count), then dedupe only the few that reach k
            np.subtract.at(degree, neighbours, 1)
            candidates = neighbours[degree[neighbours] <= k]
            frontier = np.unique(candidates) if candidates.size else candidates
    return core


# ---- bridges and articulation points ---------------------------------------------------------

def _sparse_table(values: np.ndarray) -> list[np.ndarray]:
    """table[k][i] = min(values[i : i + 2^k])."""
    table = [values]
    k = 1
    while (1 << k) <= values.size:
        prev, half = table[-1], 1 << (k - 1)
        table.append(np.minimum(prev[:-half], prev[half:]))
        k += 1
    return table


def _range_min(table: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(values[lo:hi]) for each non-empty half-open range."""
    length = hi - lo
    level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    out = np.empty(lo.size, dtype=table[0].dtype)
    for k in np.unique(level):
        sel = level == k
        row = table[int(k)]
        out[sel] = np.minimum(row[lo[sel]], row[hi[sel] - (1 << int(k))])
    return out


def _subtree_ends(depth_seq: np.ndarray) -> np.ndarray:
    """For each preorder position p: the first position q > p with depth <= depth[p] (or N)."""
    n = depth_seq.size
    table = _sparse_table(depth_seq)
    cur = np.arange(1, n + 1, dtype=np.int64)
    for k in range(len(table) - 1, -1, -1):
        step = 1 << k
        ok = cur + step <= n
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            continue
        jump = table[k][cur[idx]] > depth_seq[idx]
        cur[idx[jump]] += step
    return cur


def _tree_depth(parent: np.ndarray) -> np.ndarray:
    """Depth of every node of a rooted forest (roots point to themselves), by pointer jumping."""
    depth = (parent != np.arange(parent.size)).astype(np.int64)
    anc = parent.copy()
    while True:
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            return depth
        depth = depth + depth[anc]
        anc = nxt


def bridges_and_articulation_points(u: sp.csr_array, labels: np.ndarray | None = None
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """Bridges (as an (m, 2) array of node pairs) and articulation points of a simple undirected
    graph, by Tarjan's criterion on a depth-first spanning forest.

    A super-root joined to one node of every connected component makes the forest one tree, so
    a single ``depth_first_order`` call visits everything; in a DFS tree every non-tree edge joins
    an ancestor and a descendant, so low(v) = min over the subtree of v (a contiguous preorder
    range) of the earliest preorder position reachable by one non-tree edge.
    """
    n = u.shape[0]
    if n == 0:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    if labels is None:  # component labels of u (weak_components), if not given
        _, labels = weak_components(u)
    _, reps, sizes = np.unique(labels, return_index=True, return_counts=True)
    reps = reps[sizes > 1]  # isolated nodes need no traversal (and would make the root's
    root = n                # degree huge: scipy's DFS rescans a node's list on every return)
    # the super-root's row lists one node per component; traversing the symmetric graph as a
    # directed one gives the same DFS without scipy transposing it
    indptr = np.append(u.indptr, u.indptr[-1] + reps.size).astype(u.indptr.dtype)
    indices = np.concatenate([u.indices, reps.astype(u.indices.dtype)])
    big = sp.csr_array((np.broadcast_to(np.float64(1.0), (indices.size,)), indices, indptr),
                       shape=(n + 1, n + 1))
    order, pred = depth_first_order(big, root, directed=True, return_predecessors=True)
    isolated = np.flatnonzero(np.diff(u.indptr) == 0)  # appended as childless roots
    order = np.concatenate([order, isolated.astype(order.dtype)])
    pred[isolated] = root
    total = n + 1
    pos = np.empty(total, dtype=np.int64)
    pos[order] = np.arange(total)
    parent = pred.astype(np.int64)
    parent[root] = root

    # m[v]: earliest preorder position adjacent to v through a non-tree edge (or pos[v]). In a
    # DFS tree a non-tree neighbour is an ancestor or a descendant; only ancestors (pos < pos[v])
    # can lower m, and the parent is the latest ancestor. So the earliest neighbour is the parent
    # exactly when the parent is v's only ancestor neighbour (no back edge): then m = pos[v].
    indptr, indices = u.indptr, u.indices
    degree = np.diff(indptr)
    m = pos[:n].copy()
    nonempty = np.flatnonzero(degree > 0)
    if nonempty.size:
        earliest = np.minimum.reduceat(pos[indices], indptr[nonempty])
        back = earliest != pos[parent[nonempty]]
        m[nonempty[back]] = np.minimum(m[nonempty[back]], earliest[back])
    m_seq = np.empty(total, dtype=np.int64)
    m_seq[pos[:n]] = m
    m_seq[pos[root]] = 0

    depth_seq = _tree_depth(parent)[order]
    ends = _subtree_ends(depth_seq)
    low_seq = _range_min(_sparse_table(m_seq), np.arange(total), ends)
    low = low_seq[pos]

    child = np.flatnonzero(parent[:n] != root)
    p = parent[child]
    is_bridge = low[child] > pos[p]
    bridges = np.column_stack([p[is_bridge], child[is_bridge]])

    separating = low[child] >= pos[p]
    ap = np.zeros(n, dtype=bool)
    ap[p[separating]] = True
    comp_roots = np.flatnonzero(parent[:n] == root)
    ap[comp_roots] = False
    children = np.bincount(p, minlength=n)
    ap[comp_roots[children[comp_roots] >= 2]] = True
    return bridges, np.flatnonzero(ap)


# ---- 2-hop neighbourhoods ----------------------------------------------------------------------

def _closed_pattern(adjacency: sp.sparray | sp.spmatrix) -> sp.csr_array:
    a = canonical_csr(adjacency)
    s = sp.csr_array((np.ones(a.nnz, dtype=np.float32), a.indices, a.indptr), shape=a.shape)
    s = sp.csr_array(s + sp.eye_array(a.shape[0], dtype=np.float32, format="csr"))
    s.sum_duplicates()
    return s


def closed_pattern(adjacency: sp.sparray | sp.spmatrix) -> sp.csr_array:
    """The 0/1 pattern of I + A (float32), whose row counts are |{v} u N_out(v)|."""
    return _closed_pattern(adjacency)


def two_hop_work(adjacency: sp.sparray | sp.spmatrix, closed: sp.csr_array | None = None
                 ) -> np.ndarray:
    """Per node, the number of 2-step walks a boolean product visits: sum over w in {v} u N(v)
    of |{w} u N(w)|."""
    s = _closed_pattern(adjacency) if closed is None else closed
    return s @ np.diff(s.indptr).astype(np.float64)


def two_hop_sizes(adjacency: sp.sparray | sp.spmatrix, rows: np.ndarray | None = None,
                  chunk_work: float = 2e7, closed: sp.csr_array | None = None) -> np.ndarray:
    """|{v} u N_out(v) u N_out(N_out(v))| for ``rows`` (all nodes by default), exactly.

    This is igraph's ``neighborhood_size(order=2, mode="out")``. Computed as the row counts of
    (I + A)(I + A) over row chunks of bounded work (``closed``: I + A, if already built).
    """
    s = _closed_pattern(adjacency) if closed is None else closed
    rows = np.arange(s.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    work = (s @ np.diff(s.indptr).astype(np.float64))[rows]
    out = np.empty(rows.size, dtype=np.int64)
    bounds = np.searchsorted(np.cumsum(work), np.arange(chunk_work, work.sum() + chunk_work,
                                                        chunk_work))
    start = 0
    for stop in [*np.unique(np.clip(bounds + 1, 1, rows.size)).tolist(), rows.size]:
        if stop <= start:
            continue
        block = s[rows[start:stop]] @ s
        out[start:stop] = np.diff(block.indptr)
        start = stop
    return out


def mean_two_hop_size(adjacency: sp.sparray | sp.spmatrix, *, strata: Sequence[np.ndarray] | None
                      = None, work_budget: float = 5e7, min_samples: int = 256,
                      seed: int = 0, closed: sp.csr_array | None = None) -> tuple[float, bool]:
    """Mean 2-hop out-neighbourhood size and whether it is exact.

    Exact when the total work (2-step walks) is at most ``work_budget``; otherwise a stratified
    sample (proportional allocation over ``strata``, e.g. the node layers; at least one node per
    stratum) of about ``work_budget / mean work`` nodes (at least ``min_samples``) is evaluated
    exactly and the stratum means are weighted by stratum size.
    """
    n = adjacency.shape[0]
    if n == 0:
        return math.nan, True
    closed = _closed_pattern(adjacency) if closed is None else closed
    work = two_hop_work(adjacency, closed)
    if work.sum() <= work_budget:
        return float(two_hop_sizes(adjacency, closed=closed).mean()), True
    strata = [np.arange(n)] if strata is None else [np.asarray(s) for s in strata if len(s)]
    budget_nodes = max(min_samples, int(work_budget / max(work.mean(), 1.0)))
    rng = np.random.default_rng(seed)
    picks, weights = [], []
    for stratum in strata:
        k = min(stratum.size, max(1, round(budget_nodes * stratum.size / n)))
        chosen = rng.choice(stratum, size=k, replace=False)
        picks.append(chosen)
        weights.append(np.full(k, stratum.size / k))
    rows = np.concatenate(picks)
    sizes = two_hop_sizes(adjacency, rows, closed=closed)
    return float((sizes * np.concatenate(weights)).sum() / n), rows.size == n


# ---- 4-node motifs ---------------------------------------------------------------------------

def _lower_bound(indptr: np.ndarray, indices: np.ndarray, a: np.ndarray, b: np.ndarray
                 ) -> np.ndarray:
    """Vectorised binary search: for each i, the first offset in ``indices`` within the sorted
    neighbour list of a[i] whose entry is >= b[i] (``indptr[a[i] + 1]`` if there is none)."""
    lo = indptr[a].astype(np.int64)
    hi = indptr[a + 1].astype(np.int64)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        go_right = active & (indices[np.minimum(mid, indices.size - 1)] < b)
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)


def _has_edge(indptr: np.ndarray, indices: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised membership of b[i] in the (sorted) neighbour list of a[i]."""
    lo = _lower_bound(indptr, indices, a, b)
    found = lo < indptr[a + 1]
    found[found] = indices[lo[found]] == b[found]
    return found


def _position(indptr: np.ndarray, indices: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Offset of b[i] within the sorted neighbour list of a[i] (b[i] must be present)."""
    return _lower_bound(indptr, indices, a, b) - indptr[a]


def _neighbour_except(indptr: np.ndarray, indices: np.ndarray, v: np.ndarray,
                      excluded: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random neighbour of v[i] other than excluded[i] (a neighbour of v[i])."""
    degree = (indptr[v + 1] - indptr[v]).astype(np.int64)
    j = (rng.random(v.size) * (degree - 1)).astype(np.int64)
    j += j >= _position(indptr, indices, v, excluded)
    return indices[indptr[v] + j]


def motif4_estimate(u: sp.csr_array, samples: int = 20000, seed: int = 0) -> float:
    """Estimated number of connected induced 4-node subgraphs of the simple undirected graph u.

    Equal to igraph's ``motifs_randesu_no(size=4)`` total (weakly connected subgraphs of a directed
    graph without reciprocal edges). 3-path sampling (Jha, Seshadhri & Pinar 2015): a centre edge
    (b, c) is drawn with probability proportional to (d_b - 1)(d_c - 1) and a random further
    neighbour at each end, so every 3-path a-b-c-d is drawn with probability 1/W,
    W = sum_e (d_b - 1)(d_c - 1). The induced graphlet of each sample is classified; a graphlet
    type g containing c_g 3-paths (path 1, tailed triangle 2, 4-cycle 4, diamond 6, K4 12) has
    count ~ W * fraction_g / c_g. Induced 3-stars contain no 3-path and follow exactly from
    sum_v C(d_v, 3) minus the stars inside the other graphlets (1 per tailed triangle, 2 per
    diamond, 4 per K4).
    """
    indptr, indices = u.indptr, u.indices
    degree = np.diff(indptr).astype(np.int64)
    stars_total = float((degree * (degree - 1) * (degree - 2)).sum() / 6.0)
    # ordered centre edges (b, c) with probability (d_b - 1)(d_c - 1) / (2W), in two levels so
    # that nothing of size E is allocated: b with probability (d_b - 1) s_b / (2W),
    # s_b = sum_{c in N(b)} (d_c - 1) (one sparse product), then c in N(b) proportional to d_c - 1
    excess = (degree - 1).clip(min=0).astype(np.float64)
    row_weight = excess * (u @ excess)  # u holds ones
    cum_rows = np.cumsum(row_weight)
    weight = float(cum_rows[-1]) / 2.0 if cum_rows.size else 0.0  # W: each edge twice
    if weight <= 0 or samples <= 0:
        return stars_total
    rng = np.random.default_rng(seed)
    b = np.minimum(np.searchsorted(cum_rows, rng.random(samples) * cum_rows[-1], side="right"),
                   cum_rows.size - 1)
    neighbours, owner = gather_rows(indptr, indices, b)
    cum = np.cumsum(excess[neighbours])
    seg_end = np.cumsum(degree[b])
    seg_start = seg_end - degree[b]
    base = np.where(seg_start > 0, cum[np.maximum(seg_start - 1, 0)], 0.0)
    target = base + rng.random(samples) * (cum[seg_end - 1] - base)
    pick = np.clip(np.searchsorted(cum, target, side="right"), seg_start, seg_end - 1)
    c = neighbours[pick].astype(np.int64)
    del neighbours, owner, cum
    a = _neighbour_except(indptr, indices, b, c, rng)
    d = _neighbour_except(indptr, indices, c, b, rng)
    path = a != d
    a, b, c, d = a[path], b[path], c[path], d[path]
    ac = _has_edge(indptr, indices, a, c)
    bd = _has_edge(indptr, indices, b, d)
    ad = _has_edge(indptr, indices, a, d)
    extra = ac.astype(np.int64) + bd + ad
    frac = {
        "path": np.count_nonzero(extra == 0) / samples,
        "tailed": np.count_nonzero((extra == 1) & ~ad) / samples,
        "cycle": np.count_nonzero((extra == 1) & ad) / samples,
        "diamond": np.count_nonzero(extra == 2) / samples,
        "clique": np.count_nonzero(extra == 3) / samples,
    }
    paths_in = {"path": 1, "tailed": 2, "cycle": 4, "diamond": 6, "clique": 12}
    count = {g: weight * frac[g] / paths_in[g] for g in frac}
    stars = stars_total - count["tailed"] - 2 * count["diamond"] - 4 * count["clique"]
    return float(sum(count.values()) + stars)
