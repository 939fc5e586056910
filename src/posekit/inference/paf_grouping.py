"""Bottom-up grouping of detected peaks into instances with part affinity fields.

A PAF holds, for every skeleton edge, a 2-channel vector field that points along the
edge inside the limb (``[edge0_x, edge0_y, edge1_x, ...]``). Grouping follows SLEAP 1.4.1
step by step, because its choices decide which peaks end up together:

1. **Candidates**: for each edge (src, dst), every (src peak, dst peak) pair.
2. **Line score**: sample ``n_points`` (10) points evenly on the segment, *including*
   both ends, at ``round(xy / paf_stride)`` (nearest PAF pixel, clipped to the field);
   score = mean of ``PAF . unit(dst - src)`` plus a distance penalty
   ``min(max_edge_length / length - 1, 0) * dist_penalty_weight`` where
   ``max_edge_length = max_edge_length_ratio * max(PAF height, width, channels) *
   paf_stride`` (SLEAP takes the max over the whole PAF shape, channels included).
3. **Matching**: per edge, Hungarian assignment maximising the summed score over the
   (src x dst) score matrix; a zero-length candidate scores NaN and is never chosen.
4. **Filtering**: matched connections with score ``>= min_line_scores`` (0.25) survive.
   SLEAP 1.4.1 has no further "fraction of points above threshold" test.
5. **Assembly**: edges are visited in breadth-first order from the skeleton's root;
   connections are merged greedily into instances (SLEAP's rules, including that a
   connection whose destination is already placed but whose source is not adds nothing).
   Instances with fewer than ``min_instance_peaks`` peaks are dropped (an int is a count,
   a float in (0, 1] a fraction of the nodes).
6. **Scores**: an instance's score is the sum of the line scores of its connections; a
   point's score is its confidence-map value.

Peak coordinates given to the grouper are in *input-image* units of the network (grid
index times confidence-map stride, before undoing input scaling), as in SLEAP.

Deviation from SLEAP, for skeletons that are not trees: SLEAP only visits the edges a
breadth-first search reaches from the first root and silently ignores the others; here
the unreached edges are visited afterwards in skeleton order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def toposort_edges(edges: list[tuple[int, int]]) -> list[int]:
    """Order in which instance assembly visits the edges.

    The root is the first node (in order of appearance in ``edges``) with no incoming
    edge; edges are listed breadth-first from it, children in skeleton order. Edges the
    search does not reach follow in their original order.
    """
    if not edges:
        return []
    order_nodes: list[int] = []
    for s, d in edges:
        for v in (s, d):
            if v not in order_nodes:
                order_nodes.append(v)
    has_parent = {d for _, d in edges}
    roots = [v for v in order_nodes if v not in has_parent]
    visited_edges: list[int] = []
    if roots:
        root = roots[0]
        seen = {root}
        queue = deque([root])
        while queue:
            u = queue.popleft()
            for k, (s, d) in enumerate(edges):
                if s == u and d not in seen:
                    seen.add(d)
                    visited_edges.append(k)
                    queue.append(d)
    rest = [k for k in range(len(edges)) if k not in visited_edges]
    return visited_edges + rest


def score_paf_lines(
    pafs: torch.Tensor,
    peaks: torch.Tensor,
    channel_inds: torch.Tensor,
    edges: list[tuple[int, int]],
    pafs_stride: float,
    n_points: int = 10,
    max_edge_length_ratio: float = 0.25,
    dist_penalty_weight: float = 1.0,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Score every candidate connection of one sample.

    Args:
        pafs: (2 * n_edges, H, W) part affinity fields of one sample.
        peaks: (P, 2) peak (x, y) in network-input pixels.
        channel_inds: (P,) node index of each peak.
        edges: (src, dst) node indices, in PAF channel order.
        pafs_stride: output stride of the PAFs.
        n_points: points sampled per line.
        max_edge_length_ratio, dist_penalty_weight: the distance penalty (see module doc).

    Returns:
        One ``(src_peak_inds, dst_peak_inds, scores)`` per edge: indices into ``peaks``
        of that edge's source and destination node peaks, and the (n_src, n_dst) score
        matrix (NaN for zero-length candidates).
    """
    import torch

    if pafs.ndim != 3 or pafs.shape[0] != 2 * len(edges):
        raise ValueError(
            f"PAFs must be (2 * n_edges, H, W) = ({2 * len(edges)}, H, W) for "
            f"{len(edges)} edges; got {tuple(pafs.shape)}"
        )
    c, h, w = pafs.shape
    max_edge_length = max_edge_length_ratio * max(h, w, c) * pafs_stride
    # Every (source peak, destination peak) candidate of every edge is scored in one set
    # of tensor operations (a few peaks per part: per-edge operations would cost more in
    # call overhead than in arithmetic), then split back into per-edge matrices.
    ch = channel_inds.detach().cpu().numpy().astype(np.int64)
    per_edge, pair_src, pair_dst, pair_edge = [], [], [], []
    for k, (s, d) in enumerate(edges):
        src_inds, dst_inds = np.flatnonzero(ch == s), np.flatnonzero(ch == d)
        per_edge.append((src_inds, dst_inds))
        pair_src.append(np.repeat(src_inds, len(dst_inds)))
        pair_dst.append(np.tile(dst_inds, len(src_inds)))
        pair_edge.append(np.full(len(src_inds) * len(dst_inds), k))
    n_pairs = sum(len(e) for e in pair_edge)
    flat = np.zeros(0, np.float32)
    if n_pairs:
        dev = pafs.device
        peaks = peaks.to(torch.float32)
        src = peaks[torch.from_numpy(np.concatenate(pair_src)).to(dev)]  # (M, 2)
        dst = peaks[torch.from_numpy(np.concatenate(pair_dst)).to(dev)]
        edge = torch.from_numpy(np.concatenate(pair_edge)).to(dev)
        t = torch.linspace(0.0, 1.0, n_points, device=dev, dtype=torch.float32)
        vec = dst - src
        length = torch.linalg.norm(vec, dim=-1)  # (M,)
        unit = vec / length[..., None]
        # Points along each line: (M, n_points, 2), then the nearest PAF pixel.
        line = src[:, None, :] + t[None, :, None] * vec[:, None, :]
        cols = torch.round(line[..., 0] / pafs_stride).long().clamp(0, w - 1)
        rows = torch.round(line[..., 1] / pafs_stride).long().clamp(0, h - 1)
        paf_x = pafs[(2 * edge)[:, None], rows, cols]
        paf_y = pafs[(2 * edge + 1)[:, None], rows, cols]
        dots = paf_x * unit[:, 0:1] + paf_y * unit[:, 1:2]  # (M, n_points)
        penalty = torch.clamp(max_edge_length / length - 1.0, max=0.0) * dist_penalty_weight
        flat = (dots.mean(dim=-1) + penalty).to(torch.float32).cpu().numpy()
    out = []
    start = 0
    for src_inds, dst_inds in per_edge:
        ns, nd = len(src_inds), len(dst_inds)
        out.append((src_inds, dst_inds, flat[start : start + ns * nd].reshape(ns, nd)))
        start += ns * nd
    return out


def match_candidates(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching that maximises the total line score of one edge type.

    NaN scores (zero-length lines) get a prohibitive cost and are dropped if chosen.

    Returns:
        ``(src_rows, dst_cols, matched_scores)``.
    """
    from scipy.optimize import linear_sum_assignment

    if scores.size == 0:
        empty = np.zeros((0,), dtype=np.int64)
        return empty, empty, np.zeros((0,), dtype=np.float32)
    finite = np.isfinite(scores)
    big = (np.abs(scores[finite]).max() if finite.any() else 0.0) * 1e3 + 1e6
    cost = np.where(finite, -scores, big)
    rows, cols = linear_sum_assignment(cost)
    matched = scores[rows, cols]
    keep = np.isfinite(matched)
    return rows[keep], cols[keep], matched[keep]


@dataclass
class EdgeConnection:
    """A matched connection: peak indices within their node's peak list, and its score."""

    src_peak: int
    dst_peak: int
    score: float


def assign_connections_to_instances(
    connections: list[tuple[tuple[int, int], list[EdgeConnection]]],
    min_instance_peaks: int | float = 0,
    n_nodes: int | None = None,
) -> dict[tuple[int, int], int]:
    """Greedy partition of connections into instances (SLEAP's rules).

    Args:
        connections: ``((src_node, dst_node), [EdgeConnection, ...])`` in visiting order.
        min_instance_peaks: drop instances with fewer peaks (int) or with fewer than this
            fraction of ``n_nodes`` peaks (float).
        n_nodes: number of skeleton nodes (for a fractional ``min_instance_peaks``).

    Returns:
        ``{(node, peak_index_within_node): instance_id}``; ids need not be contiguous.
    """
    assign: dict[tuple[int, int], int] = {}
    for (src_node, dst_node), conns in connections:
        for conn in conns:
            src_id = (src_node, conn.src_peak)
            dst_id = (dst_node, conn.dst_peak)
            src_inst = assign.get(src_id)
            dst_inst = assign.get(dst_id)
            if src_inst is None and dst_inst is None:
                new = max(assign.values(), default=-1) + 1
                assign[src_id] = new
                assign[dst_id] = new
            elif src_inst is not None and dst_inst is None:
                assign[dst_id] = src_inst
            elif src_inst is not None and dst_inst is not None:
                # The destination joins the source's instance; the two partial instances
                # are merged when they share no node type.
                assign[dst_id] = src_inst
                src_nodes = {p[0] for p, i in assign.items() if i == src_inst}
                dst_nodes = {p[0] for p, i in assign.items() if i == dst_inst}
                if not src_nodes & dst_nodes:
                    for p, i in list(assign.items()):
                        if i == dst_inst:
                            assign[p] = src_inst
            # src unassigned, dst assigned: SLEAP leaves both as they are.

    if min_instance_peaks > 0 and assign:
        threshold = min_instance_peaks
        if isinstance(min_instance_peaks, float):
            if n_nodes is None:
                n_nodes = len({n for (s, d), _ in connections for n in (s, d)})
            threshold = int(min_instance_peaks * n_nodes)
        ids, counts = np.unique(list(assign.values()), return_counts=True)
        count_of = dict(zip(ids.tolist(), counts.tolist()))
        assign = {p: i for p, i in assign.items() if count_of[i] >= threshold}
    return assign


@dataclass
class GroupedInstances:
    """Instances of one sample: points (K, n_nodes, 2) with NaN for missing nodes,
    point_scores (K, n_nodes) and instance_scores (K,)."""

    points: np.ndarray
    point_scores: np.ndarray
    instance_scores: np.ndarray

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass
class PAFGrouper:
    """SLEAP's PAF grouping with its defaults.

    Attributes:
        edges: skeleton edges as (src, dst) node indices, in PAF channel order.
        n_nodes: number of skeleton nodes (confidence-map channels).
        pafs_stride: output stride of the PAF head (may differ from the confmap stride).
        max_edge_length_ratio: penalise lines longer than this fraction of the image side.
        dist_penalty_weight: weight of that penalty.
        n_points: points sampled per candidate line.
        min_instance_peaks: minimum peaks per instance (int count or float fraction).
        min_line_scores: minimum line score of a kept connection.
        max_instances: keep at most this many instances per sample, best score first.
    """

    edges: list[tuple[int, int]]
    n_nodes: int
    pafs_stride: float
    max_edge_length_ratio: float = 0.25
    dist_penalty_weight: float = 1.0
    n_points: int = 10
    min_instance_peaks: int | float = 0
    min_line_scores: float = 0.25
    max_instances: int | None = None
    sorted_edge_inds: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.edges = [(int(s), int(d)) for s, d in self.edges]
        for s, d in self.edges:
            if not (0 <= s < self.n_nodes and 0 <= d < self.n_nodes):
                raise ValueError(
                    f"edge ({s}, {d}) refers to a node outside 0..{self.n_nodes - 1}; "
                    "edges must index the confidence-map channels"
                )
        self.sorted_edge_inds = toposort_edges(self.edges)

    def group_sample(
        self,
        pafs: torch.Tensor,
        peaks: torch.Tensor,
        peak_vals: torch.Tensor,
        channel_inds: torch.Tensor,
    ) -> GroupedInstances:
        """Group the peaks of one sample.

        Args:
            pafs: (2 * n_edges, H, W).
            peaks: (P, 2) (x, y) in network-input pixels.
            peak_vals: (P,) confidence-map values.
            channel_inds: (P,) node of each peak.
        """
        scored = score_paf_lines(
            pafs,
            peaks,
            channel_inds,
            self.edges,
            self.pafs_stride,
            n_points=self.n_points,
            max_edge_length_ratio=self.max_edge_length_ratio,
            dist_penalty_weight=self.dist_penalty_weight,
        )
        peaks_np = peaks.detach().to("cpu").double().numpy()
        vals_np = peak_vals.detach().to("cpu").double().numpy()
        ch_np = channel_inds.detach().to("cpu").numpy()
        node_peak_inds = [np.nonzero(ch_np == n)[0] for n in range(self.n_nodes)]

        connections = []
        for k in self.sorted_edge_inds:
            _, _, scores = scored[k]
            rows, cols, matched = match_candidates(scores)
            ok = matched >= self.min_line_scores
            conns = [
                EdgeConnection(int(r), int(c), float(v))
                for r, c, v in zip(rows[ok], cols[ok], matched[ok])
            ]
            connections.append((self.edges[k], conns))

        assign = assign_connections_to_instances(
            connections, self.min_instance_peaks, n_nodes=self.n_nodes
        )
        return self._make_instances(assign, connections, node_peak_inds, peaks_np, vals_np)

    def _make_instances(self, assign, connections, node_peak_inds, peaks_np, vals_np):
        if not assign:
            return GroupedInstances(
                np.zeros((0, self.n_nodes, 2), np.float32),
                np.zeros((0, self.n_nodes), np.float32),
                np.zeros((0,), np.float32),
            )
        ids = sorted(set(assign.values()))
        index_of = {i: j for j, i in enumerate(ids)}
        k = len(ids)
        scores = np.zeros((k,), np.float64)
        for (src_node, _), conns in connections:
            for conn in conns:
                inst = assign.get((src_node, conn.src_peak))
                if inst is not None:
                    scores[index_of[inst]] += conn.score
        points = np.full((k, self.n_nodes, 2), np.nan, np.float64)
        point_scores = np.full((k, self.n_nodes), np.nan, np.float64)
        for (node, peak), inst in assign.items():
            j = index_of[inst]
            p = node_peak_inds[node][peak]
            points[j, node] = peaks_np[p]
            point_scores[j, node] = vals_np[p]
        if self.max_instances is not None and k > self.max_instances:
            order = np.argsort(-scores, kind="stable")[: self.max_instances]
            points, point_scores, scores = points[order], point_scores[order], scores[order]
        return GroupedInstances(
            points.astype(np.float32), point_scores.astype(np.float32), scores.astype(np.float32)
        )

    def group(
        self,
        pafs: torch.Tensor,
        peaks: torch.Tensor,
        peak_vals: torch.Tensor,
        sample_inds: torch.Tensor,
        channel_inds: torch.Tensor,
    ) -> list[GroupedInstances]:
        """Group a batch: ``pafs`` (N, 2 * n_edges, H, W) and flat peak lists as returned
        by `find_local_peaks` (coordinates already multiplied by the confmap stride)."""
        out = []
        for n in range(pafs.shape[0]):
            sel = sample_inds == n
            out.append(self.group_sample(pafs[n], peaks[sel], peak_vals[sel], channel_inds[sel]))
        return out
