"""``paizoo graph``: build a model's multipartite (or bipartite) graph encoding and summarise it."""

from __future__ import annotations

import argparse
import time

from .common import UsageError, parse_shape, zoo_model_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph", help="summarise the graph encoding (MGE or per-layer BGE) of a masked model",
        description="Build the multipartite graph encoding (Cunegatti et al., TMLR 2024) of a "
                    "freshly initialised model masked by a saved mask (or a random mask of the "
                    "given sparsity, or dense), and print its node layers, sizes and build time. "
                    "With --bipartite, print one bipartite graph per prunable layer instead.")
    p.add_argument("--model", required=True,
                   help="paizoo model (see `paizoo models`), timm:<name> or torchvision:<name>")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="one input sample's shape, e.g. 3,32,32 (default: the zoo model's)")
    p.add_argument("--num-classes", type=int, default=None)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--mask", default=None, help="a mask .safetensors file (paizoo prune)")
    source.add_argument("--sparsity", type=float, default=None,
                        help="random mask keeping round((1-s) * n) weights in every layer")
    p.add_argument("--seed", type=int, default=0, help="model initialisation and random mask")
    p.add_argument("--absorb-pooling", action="store_true",
                   help="the paper's variant: pooling layers are not node layers")
    p.add_argument("--bipartite", choices=("rolled", "rolled_channel"), default=None,
                   help="per-layer bipartite encodings instead of the MGE")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=cmd_graph)


def random_layer_mask(model: object, sparsity: float, seed: int) -> dict[str, object]:
    """Keep exactly ``round((1 - sparsity) * numel)`` random weights of every prunable layer."""
    import torch

    from ..errors import SparsityError
    from ..params import prunable_parameters

    if not 0.0 <= sparsity < 1.0:
        raise SparsityError(f"--sparsity must be in [0, 1), got {sparsity}")
    gen = torch.Generator().manual_seed(seed)
    mask = {}
    for name, p in prunable_parameters(model).items():  # type: ignore[arg-type]
        keep = torch.zeros(p.numel(), dtype=torch.bool)
        keep[torch.randperm(p.numel(), generator=gen)[:round((1 - sparsity) * p.numel())]] = True
        mask[name] = keep.reshape(p.shape)
    return mask


def cmd_graph(args: argparse.Namespace) -> int:
    from ..graph import bipartite, multipartite
    from ..masks import Mask
    from ..models import create_model

    shape, kwargs = zoo_model_input(args.model, args.input_shape)
    if shape is None and args.bipartite is None:
        raise UsageError(f"pass --input-shape for {args.model} (e.g. 3,224,224)")
    model = create_model(args.model, num_classes=args.num_classes, seed=args.seed, **kwargs)
    mask = None
    if args.mask:
        mask = Mask.load(args.mask, model)
    elif args.sparsity is not None:
        mask = random_layer_mask(model, args.sparsity, args.seed)
    what = ("dense" if mask is None else
            f"mask {args.mask}" if args.mask else f"random mask, sparsity {args.sparsity}")
    start = time.perf_counter()
    if args.bipartite:
        graphs = bipartite(model, mask, kind=args.bipartite)
        elapsed = time.perf_counter() - start
        width = max(len(n) for n in graphs)
        print(f"{'layer':<{width}}  {'left':>16} {'right':>7} {'edges':>12}")
        for name, g in graphs.items():
            left, right = g.layers
            print(f"{name:<{width}}  {'x'.join(map(str, left.shape)):>16} {right.size:>7} "
                  f"{g.num_edges:>12,}")
        total = sum(g.num_edges for g in graphs.values())
        print(f"{args.bipartite} bipartite encodings of {args.model} ({what}): {len(graphs)} "
              f"layers, {total:,} edges, {elapsed:.2f} s")
        return 0
    graph = multipartite(model, mask, shape, absorb_pooling=args.absorb_pooling,
                         progress=args.progress)
    elapsed = time.perf_counter() - start
    print(graph.summary())
    print(f"MGE of {args.model} on {'x'.join(map(str, shape))} ({what}"
          f"{', pooling absorbed' if args.absorb_pooling else ''}): {graph.num_nodes:,} nodes, "
          f"{graph.num_edges:,} edges, built in {elapsed:.2f} s")
    return 0
