"""Ranked lists of a re-ID model as pictures, in the manner of torchreid's
``visualize_ranked_results`` (the query, then its top-k gallery items by ascending distance, a
green frame around a correct match and a red one around a wrong one; the gallery items the
evaluation protocol removes for that query, such as same-identity same-camera items, are left
out as the evaluation does). Under the ``cuhk03`` protocol (the classic CUHK03 split's
single-gallery-shot metric, ``common/metrics/ranking.py``) the list is that of the metric's
first draw: after the removals, every identity is represented by ONE gallery image, the one
the evaluation's first repeat draws (its priorities: ``cuhk03_priorities`` with the default
seed), so the picture's rank 1 is that draw's rank 1.

A recipe provides the data with its ``ranked_inputs(cfg, B, model, select=None, setting=None)
-> RankedSet`` hook (``common/recipes/mvd.py``, ``vkd.py``, ``kdreid.py``): the distances of the
chosen queries of one evaluation setting and what to draw of each item. :func:`from_features` builds
the :class:`RankedSet` from features, :func:`choose_setting` and :func:`selected` do the
common argument handling, so a recipe's hook is a few lines.

Picture layout (:func:`layout`): one row per query; in a row the query tile, a wider gap,
then the gallery tiles of ranks 1..k. A tile is the image resized to ``tile`` (height, width)
inside a :data:`BORDER`-pixel frame (query :data:`QUERY_COLOUR`, match :data:`MATCH_COLOUR`,
wrong :data:`WRONG_COLOUR`), with a two-line caption below it: ``query`` / ``#<rank>`` with
the identity, then the camera (1-based) and the modality tag (``RGB``/``IR`` on cross-modal
data).
"""
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from common.errors import ConfigError
from common.metrics.ranking import cuhk03_priorities, parse_options
from common.metrics.reference import best_per_pid, removed_from_ranking

MODALITY_TAGS = {"visible": "RGB", "infrared": "IR"}
MATCH_COLOUR, WRONG_COLOUR, QUERY_COLOUR = (0, 190, 0), (220, 0, 0), (40, 40, 40)
BACKGROUND, TEXT = (255, 255, 255), (0, 0, 0)
BORDER, GAP, QUERY_GAP, MARGIN = 4, 6, 24, 8
CAPTION_HEIGHT, TITLE_HEIGHT, ROW_GAP = 28, 16, 10
LINE_HEIGHT = 13


class RankedSet(NamedTuple):
    """The queries of one evaluation setting against its gallery. Images are uint8
    (H, W, 3) arrays or image file paths (VKD: a tracklet's first frame)."""
    setting: str
    protocol: str                 # common.metrics protocol: decides the removed gallery items
    dist: np.ndarray              # (queries, gallery) distances, smaller = closer
    query_images: Sequence
    gallery_images: Sequence
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_cams: np.ndarray            # 0-based
    g_cams: np.ndarray
    q_tags: Sequence[str]         # modality tags ('' on single-modality data)
    g_tags: Sequence[str]
    q_index: np.ndarray           # each query's index in the setting's full query list


class RankedRow(NamedTuple):
    query: int                    # row of RankedSet.dist
    gallery: np.ndarray           # gallery indices of ranks 1..k
    matches: np.ndarray           # bool per rank: same identity as the query


class Tile(NamedTuple):
    """One drawn tile: ``box`` = (left, top, right, bottom) of the frame (image inside it)."""
    row: int
    column: int                   # 0 = the query
    box: Tuple[int, int, int, int]
    rank: int                     # 0 for the query
    pid: int
    cam: int                      # 1-based, as printed
    tag: str
    match: Optional[bool]         # None for the query
    caption: Tuple[str, str]


def choose_setting(names: Sequence[str], setting: Optional[str]) -> str:
    """``setting`` (default the first of ``names``), refused in one line when unknown."""
    if not setting:
        return names[0]
    if setting not in names:
        raise ConfigError(f"unknown setting {setting!r}; this checkpoint's evaluation has {', '.join(names)}")
    return setting


def selected(select: Optional[Callable], q_pids: np.ndarray) -> np.ndarray:
    """Query indices chosen by ``select(q_pids)`` (all when None)."""
    return np.arange(len(q_pids)) if select is None else np.asarray(select(np.asarray(q_pids)), np.int64)


def pick_queries(q_pids: Sequence[int], count: int = 8, ids: Optional[Sequence[int]] = None) -> np.ndarray:
    """Indices of the queries to draw: the first query of each identity of ``ids``, else the
    first query of each of the first ``count`` identities (in query-list order)."""
    pids = [int(p) for p in q_pids]
    if ids:
        missing = [int(i) for i in ids if int(i) not in pids]
        if missing:
            known = sorted(set(pids))
            shown = ", ".join(map(str, known[:20])) + (" ..." if len(known) > 20 else "")
            raise ConfigError(f"identity {missing[0]} has no query in this setting; expected one of {shown}")
        return np.array([pids.index(int(i)) for i in ids], np.int64)
    if count < 1:
        raise ConfigError(f"--queries must be >= 1, got {count}")
    out, seen = [], set()
    for n, pid in enumerate(pids):
        if pid not in seen and len(out) < count:
            seen.add(pid)
            out.append(n)
    return np.array(out, np.int64)


def from_features(setting: str, protocol: str, metric: str, qf, gf, query_images, gallery_images, q_pids, g_pids,
                  q_cams, g_cams, q_tags=None, g_tags=None, q_index=None) -> RankedSet:
    """A :class:`RankedSet` whose distances are ``common.metrics.compute_distance(qf, gf,
    metric)`` (the evaluation's metric); tags default to '' (single modality)."""
    from common.metrics import compute_distance
    n_q, n_g = len(q_pids), len(g_pids)
    return RankedSet(setting, protocol, compute_distance(qf, gf, metric), list(query_images), list(gallery_images),
                     np.asarray(q_pids, np.int64), np.asarray(g_pids, np.int64), np.asarray(q_cams, np.int64),
                     np.asarray(g_cams, np.int64), list(q_tags or [""] * n_q), list(g_tags or [""] * n_g),
                     np.arange(n_q) if q_index is None else np.asarray(q_index, np.int64))


def first_shot_priorities(protocol: str, num_gallery: int) -> Optional[np.ndarray]:
    """The single-gallery-shot priorities of the evaluation's first repeat (one per gallery
    item) under ``protocol`` 'cuhk03', with the metric's default options; None otherwise."""
    if protocol != "cuhk03":
        return None
    opts = parse_options(protocol, {})
    return cuhk03_priorities(num_gallery, int(opts["num_repeats"]), opts["seed"])[0]


def top_k(rs: RankedSet, topk: int) -> List[RankedRow]:
    """Per query: its ``topk`` nearest gallery items (stable order of ascending distance,
    the protocol's removed items left out; cuhk03: one item per identity, the first draw's)
    and whether each is a correct match."""
    if topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {topk}")
    shot = first_shot_priorities(rs.protocol, len(rs.g_pids))
    rows = []
    for q in range(len(rs.q_pids)):
        order = np.argsort(rs.dist[q], kind="stable")
        keep = ~removed_from_ranking(rs.protocol, rs.q_pids[q], rs.q_cams[q], rs.g_pids[order], rs.g_cams[order])
        kept = order[keep]
        if shot is not None:
            kept = kept[best_per_pid(rs.g_pids[kept], shot[kept])]
        best = kept[:topk]
        rows.append(RankedRow(q, best, rs.g_pids[best] == rs.q_pids[q]))
    return rows


def _caption(rank: int, pid: int, cam: int, tag: str) -> Tuple[str, str]:
    return ("query" if rank == 0 else f"#{rank}") + f" id {pid}", f"cam {cam}" + (f" {tag}" if tag else "")


def layout(rs: RankedSet, rows: Sequence[RankedRow], tile: Tuple[int, int], title: bool = True):
    """((width, height) of the picture, [Tile, ...]) for ``rows`` (module docstring)."""
    th, tw = tile
    cell_w, cell_h = tw + 2 * BORDER, th + 2 * BORDER
    row_h = (TITLE_HEIGHT if title else 0) + cell_h + CAPTION_HEIGHT
    cols = 1 + max((len(r.gallery) for r in rows), default=0)
    width = 2 * MARGIN + cols * cell_w + (cols - 1) * GAP + QUERY_GAP - GAP
    height = 2 * MARGIN + len(rows) * row_h + (len(rows) - 1) * ROW_GAP
    tiles = []
    for i, r in enumerate(rows):
        top = MARGIN + i * (row_h + ROW_GAP) + (TITLE_HEIGHT if title else 0)
        q = r.query
        items = [(0, int(rs.q_pids[q]), int(rs.q_cams[q]), rs.q_tags[q], None)]
        items += [(k + 1, int(rs.g_pids[g]), int(rs.g_cams[g]), rs.g_tags[g], bool(m))
                  for k, (g, m) in enumerate(zip(r.gallery, r.matches))]
        for c, (rank, pid, cam, tag, match) in enumerate(items):
            left = MARGIN + c * (cell_w + GAP) + (QUERY_GAP - GAP if c else 0)
            tiles.append(Tile(i, c, (left, top, left + cell_w, top + cell_h), rank, pid, cam + 1, tag, match,
                              _caption(rank, pid, cam + 1, tag)))
    return (width, height), tiles


def _as_tile(image, tile: Tuple[int, int]):
    from PIL import Image
    from common.data.base import read_image
    arr = read_image(image) if isinstance(image, str) else np.asarray(image, np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3])).resize((tile[1], tile[0]), Image.BILINEAR)


def colour_of(match: Optional[bool]) -> Tuple[int, int, int]:
    return QUERY_COLOUR if match is None else MATCH_COLOUR if match else WRONG_COLOUR


def draw(rs: RankedSet, rows: Sequence[RankedRow], tile: Tuple[int, int] = (128, 64), title: bool = True):
    """(PIL RGB picture, its tiles from :func:`layout`)."""
    from PIL import Image, ImageDraw, ImageFont
    size, tiles = layout(rs, rows, tile, title)
    canvas = Image.new("RGB", size, BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for t in tiles:
        left, top, right, bottom = t.box
        pen.rectangle((left, top, right - 1, bottom - 1), fill=colour_of(t.match))
        image = rs.query_images[rows[t.row].query] if t.rank == 0 else \
            rs.gallery_images[int(rows[t.row].gallery[t.rank - 1])]
        canvas.paste(_as_tile(image, tile), (left + BORDER, top + BORDER))
        for n, text in enumerate(t.caption):
            pen.text((left, bottom + 2 + n * LINE_HEIGHT), text, fill=TEXT, font=font)
        if title and t.column == 0:
            q = rows[t.row].query
            shown, hits = len(rows[t.row].gallery), int(np.sum(rows[t.row].matches))
            pen.text((left, top - TITLE_HEIGHT + 2), f"{rs.setting}: query {int(rs.q_index[q])}, top {shown} "
                     f"({hits} correct)", fill=TEXT, font=font)
    return canvas, tiles
