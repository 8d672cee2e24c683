"""Build the hard benchmark: stain pairs of a specimen dataset made hard for a registration engine.

Every source is warped by a random large affine as in ``shared/bench/make_cases.py`` (any rotation,
scale 0.8–1.25, mild anisotropy and shear), half of them mirrored; the kinds of case:

- ``disc``: both sections cut to the same centred disc or ellipse of tissue (the outline tells nothing);
- ``frame``: crops of the tissue interior, so tissue fills the whole frame on both sides;
- ``partial``: one image cropped to 60–80 % of the other's extent (either side);
- ``pale``: pairs of the palest stains of a tissue, both faded further (towards white, or black for dark-field);
- ``scale-gap``: the whole source shown at 0.35–0.6× or 1.6–2.8× the target's scale;
- ``low-res``: the whole source 3–4× smaller than the target (downsampled with anti-aliasing);
- ``artifacts``: pen-marker strokes, dust, a fold band and air bubbles on one image or both;
- ``extra-tissue``: a piece of another section (15–40 % of this one's area) on the glass beside it;
- ``uneven-background``: grey or yellowish glass under an illumination gradient or vignette;
- ``heavy-jpeg``: both images saved at JPEG quality 8–20;
- ``inverted``: one image on a dark background (inverted, or a stain channel as fluorescence).

The geometry of every case comes from the best affine fit of the expert landmarks of the original
pair; the landmarks of both sides are carried along (shifted by crops and canvases, warped with the
source; painting moves none), so ``score.py`` scores the cases as it scores the shared ones. Two
parts with independent seeds: the development part (tune and calibrate on it) and the final part
(look at it only for the numbers you report). The dataset is any ``--spec`` in the layout of
``shared/data/anhir-lung-lesion-3`` (pairs with ``tissue``, images and ANHIR landmark CSVs).

usage: python benchmarks/make_hard_cases.py OUT_DIR --part dev|final [--spec SPEC.json]
       [--kinds KIND,...] [--per-kind N] [--seed S]
Output: OUT_DIR/pairs.csv (ANHIR/BIRL layout, plus ``Kind``),
OUT_DIR/images/, OUT_DIR/landmarks/.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
import hard_kinds  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
SPEC = SHARED / "data/anhir-lung-lesion-3/spec.json"
OLD_KINDS = ("disc", "frame", "partial", "pale")
NEW_KINDS = ("scale-gap", "low-res", "artifacts", "extra-tissue", "uneven-background", "heavy-jpeg", "inverted")
KINDS = OLD_KINDS + NEW_KINDS
SCALES = {"scale-gap": ((0.35, 0.6), (1.6, 2.8)), "low-res": ((0.25, 1 / 3),)}  # the source's scale
SEEDS = {"dev": 1001, "final": 2002}
ORACLE_LIMIT = 0.015  # cases whose landmark fit leaves more are redrawn
MIN_LANDMARKS = 10    # and those with fewer landmarks visible in both images
PALEST = 3  # the stains whose tissue is faintest make up the pale pairs


def read_landmarks(path: Path) -> np.ndarray:
    rows = list(csv.reader(open(path)))
    head = [h.strip() for h in rows[0]]
    ix, iy = head.index("X"), head.index("Y")
    return np.array([[float(r[ix]), float(r[iy])] for r in rows[1:] if r], float)


def write_landmarks(path: Path, points: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "X", "Y"])
        writer.writerows([i, f"{x:.3f}", f"{y:.3f}"] for i, (x, y) in enumerate(points))


def affine_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """3×3 least-squares affine source → target points."""
    design = np.hstack([source, np.ones((len(source), 1))])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def random_linear(rng: np.random.Generator, flip: bool) -> tuple[np.ndarray, float, float]:
    """The random linear part of ``make_cases.py``: rotation, scale, anisotropy, shear, optional mirror."""
    theta = math.radians(rng.uniform(-180, 180))
    scale = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    aspect = math.exp(rng.uniform(math.log(0.9), math.log(1.1)))
    shear = rng.uniform(-0.1, 0.1)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    linear = rot @ np.diag([scale * math.sqrt(aspect), scale / math.sqrt(aspect)]) @ np.array([[1.0, shear], [0, 1]])
    if flip:
        linear = linear @ np.diag([-1.0, 1.0])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    return matrix, math.degrees(theta), scale


def tissue_mask(image: np.ndarray) -> np.ndarray:
    """Rough tissue mask (darker than a bright background, brighter than a dark one), for placing crops inside tissue."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (0, 0), 4)
    background = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    tissue = gray < background - 8 if background >= 128 else gray > background + 8
    mask = cv2.morphologyEx(tissue.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((25, 25), np.uint8))
    return ndimage.binary_fill_holes(mask)


def background_colour(image: np.ndarray) -> tuple[int, ...]:
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill) -> np.ndarray:
    return cv2.warpAffine(image, matrix[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=fill)


def inside_region(rng, mask: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-size (x, y) of a window of about ``fraction`` of the image that is (nearly) all tissue."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()])
    half = np.array([w, h]) * fraction / 2
    for _ in range(12):
        x0, y0 = np.maximum((centre - half).astype(int), 0)
        x1, y1 = np.minimum((centre + half).astype(int), [w, h])
        if mask[y0:y1, x0:x1].mean() >= 0.95:
            break
        half *= 0.93
    return centre + rng.uniform(-0.05, 0.05, 2) * half, half


def _in_frame(points: np.ndarray, shape) -> np.ndarray:
    return (points[:, 0] >= 0) & (points[:, 1] >= 0) & (points[:, 0] <= shape[1] - 1) & (points[:, 1] <= shape[0] - 1)


class Case:
    """One case: the two images and the landmarks visible in both (pixels, x = column).

    A landmark counts when it lies inside both images and, where given, ``inside`` says it is not
    in painted-over background: a crop's landmarks elsewhere mark structure neither image shows.
    ``quality`` is the JPEG quality (target, source) the images are saved at.
    """

    def __init__(self, target, target_points, source, source_points, inside=None, quality=(95, 95)):
        visible = _in_frame(target_points, target.shape) & _in_frame(source_points, source.shape)
        visible &= True if inside is None else inside
        self.target, self.target_points = target, target_points[visible]
        self.source, self.source_points = source, source_points[visible]
        self.quality = quality

    def oracle_rtre(self) -> float:
        """Median rTRE of the best affine fit of the landmarks: the floor of any affine registration."""
        if len(self.target_points) < MIN_LANDMARKS:
            return float("inf")
        fitted = apply(affine_fit(self.source_points, self.target_points), self.source_points)
        return float(np.median(np.hypot(*(fitted - self.target_points).T)) / np.hypot(*self.target.shape[:2]))


def place_whole(rng, linear: np.ndarray, source: np.ndarray, fill, unit) -> tuple[np.ndarray, np.ndarray]:
    """The whole source under ``linear``, with 0–15 % of ``unit`` (x, y) of glass added on every side; its shift."""
    sh, sw = source.shape[:2]
    corners = apply(linear, np.array([[0, 0], [sw, 0], [0, sh], [sw, sh]], float))
    lo, hi = corners.min(0), corners.max(0)
    pad_lo, pad_hi = rng.uniform(0.0, 0.15, 2) * unit, rng.uniform(0.0, 0.15, 2) * unit
    place = translation(*(pad_lo - lo))
    size = np.ceil(hi - lo + pad_lo + pad_hi).astype(int)
    return warp(source, place @ linear, tuple(size), fill), place


def make_case(kind: str, rng, target, source, lt, ls, flip: bool) -> tuple[Case, float, float]:
    truth = affine_fit(ls, lt)                      # original source → original target
    linear, angle, scale = random_linear(rng, flip)  # original source → new source (before placement)
    fill_t, fill_s = background_colour(target), background_colour(source)
    h, w = target.shape[:2]
    sh, sw = source.shape[:2]

    if kind == "disc":
        mask = tissue_mask(target)
        ys, xs = np.nonzero(mask)
        centre = np.array([xs.mean(), ys.mean()])
        radius = 0.38 * min(xs.max() - xs.min(), ys.max() - ys.min())
        axes = radius * np.array([1.0, rng.uniform(0.7, 1.0)])
        tilt = rng.uniform(0, np.pi)
        ellipse = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]]) @ np.diag(axes)
        # unit disc → target ellipse; a point lies inside iff its preimage has norm ≤ 1
        disc_to_target = np.eye(3)
        disc_to_target[:2, :2], disc_to_target[:2, 2] = ellipse, centre
        margin = 0.06 * radius
        circle = np.stack([np.cos(np.linspace(0, 2 * np.pi, 64)), np.sin(np.linspace(0, 2 * np.pi, 64))], 1)
        target_crop = translation(*-(apply(disc_to_target, circle).min(0) - margin))
        to_new_source = linear @ np.linalg.inv(truth) @ disc_to_target          # unit disc → new source
        outline = apply(to_new_source, circle)
        place = translation(*-(outline.min(0) - rng.uniform(0.03, 0.12, 2) * (outline.max(0) - outline.min(0))))
        t_size = np.ceil(apply(target_crop, apply(disc_to_target, circle)).max(0) + margin).astype(int)
        s_extent = outline.max(0) - outline.min(0)
        s_size = np.ceil(apply(place, outline).max(0) + rng.uniform(0.03, 0.12, 2) * s_extent).astype(int)
        new_target = warp(target, target_crop, tuple(t_size), fill_t)
        new_source = warp(source, place @ linear, tuple(s_size), fill_s)
        for image, to_disc, fill in ((new_target, np.linalg.inv(target_crop @ disc_to_target), fill_t),
                                     (new_source, np.linalg.inv(place @ to_new_source), fill_s)):
            yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
            unit = apply(to_disc, np.stack([xx.ravel(), yy.ravel()], 1).astype(float))
            image[(np.hypot(*unit.T) > 1.0).reshape(image.shape[:2])] = fill
        inside = np.hypot(*apply(np.linalg.inv(disc_to_target), lt).T) <= 1.0
        return Case(new_target, apply(target_crop, lt), new_source, apply(place @ linear, ls), inside), angle, scale

    if kind == "frame":
        centre, half = inside_region(rng, tissue_mask(target), rng.uniform(0.65, 0.8))
        target_crop = translation(*-(centre - half))
        new_target = warp(target, target_crop, tuple(np.round(2 * half).astype(int)), fill_t)
        # the source window: about the same tissue, a rectangle inside the warped source's tissue
        to_new = linear @ np.linalg.inv(truth)
        s_centre = apply(to_new, centre[None])[0] + rng.uniform(-0.08, 0.08, 2) * half * scale
        corners = apply(linear, np.array([[0, 0], [sw, 0], [0, sh], [sw, sh]], float))
        shift = -corners.min(0)
        size = np.ceil(corners.max(0) - corners.min(0)).astype(int)
        warped_mask = warp(tissue_mask(source).astype(np.uint8), translation(*shift) @ linear, tuple(size), 0)
        s_half = half * scale * rng.uniform(0.85, 1.0)
        for _ in range(12):
            x0, y0 = np.maximum((s_centre + shift - s_half).astype(int), 0)
            x1, y1 = (s_centre + shift + s_half).astype(int)
            if warped_mask[y0:y1, x0:x1].mean() >= 0.95:
                break
            s_half *= 0.93
        place = translation(*-(s_centre - s_half))
        new_source = warp(source, place @ linear, tuple(np.round(2 * s_half).astype(int)), fill_s)
        return Case(new_target, apply(target_crop, lt), new_source, apply(place @ linear, ls)), angle, scale

    new_source, place = place_whole(rng, linear, source, fill_s, [sw, sh])
    size = np.array(new_source.shape[1::-1])
    new_target, target_crop = target, np.eye(3)
    if kind == "partial":
        keep = rng.uniform(0.6, 0.8, 2)
        if rng.random() < 0.5:   # crop the target
            offset = rng.uniform(0, 1 - keep) * [w, h]
            target_crop = translation(*-offset)
            new_target = warp(target, target_crop, tuple(np.round(keep * [w, h]).astype(int)), fill_t)
        else:                    # crop the source
            offset = rng.uniform(0, 1 - keep) * size
            place = translation(*-offset) @ place
            new_source = warp(source, place @ linear, tuple(np.round(keep * size).astype(int)), fill_s)
    else:  # pale: fade both towards their glass
        new_target, new_source = fade(target, rng.uniform(0.3, 0.55)), fade(new_source, rng.uniform(0.3, 0.55))
    return Case(new_target, apply(target_crop, lt), new_source, apply(place @ linear, ls)), angle, scale


def fade(image: np.ndarray, strength: float) -> np.ndarray:
    """The stain at ``strength`` of its absorbance (bright-field: towards white) or of its emission (towards black)."""
    if np.mean(background_colour(image)) >= 128:
        return (255 - (255 - image.astype(np.float32)) * strength).astype(np.uint8)
    return (image.astype(np.float32) * strength).astype(np.uint8)


def one_or_both(rng) -> tuple[str, ...]:
    return [("target",), ("source",), ("target", "source")][rng.integers(3)]


def make_new_case(kind: str, rng, target, source, lt, ls, donors, flip: bool) -> tuple[Case, float, float]:
    """A case of the kinds after ``pale``: the whole source under a random large affine, then painted over."""
    linear, angle, scale = random_linear(rng, flip)
    if kind in SCALES:  # the kind's scale replaces the affine's own; rotation, shear and mirror stay
        ranges = SCALES[kind]
        wanted = rng.uniform(*ranges[rng.integers(len(ranges))])
        linear[:2, :2] *= wanted / scale
        scale = wanted
    if scale < 1:  # a smaller image of the same glass is a lower resolution scan, not an aliased one
        source = cv2.GaussianBlur(source, (0, 0), (1 / scale - 1) / 2)
    fills = {"target": background_colour(target), "source": background_colour(source)}
    # glass in proportion to the section as shown, so that a small source is not mostly glass
    new_source, place = place_whole(rng, linear, source, fills["source"], scale * np.array(source.shape[1::-1]))
    images = {"target": target, "source": new_source}
    to_image = {"target": np.eye(3), "source": place @ linear}  # original landmarks → the image's pixels
    quality = (95, 95)
    if kind == "heavy-jpeg":
        quality = tuple(int(q) for q in rng.integers(8, 21, 2))
    elif kind == "inverted":
        side = ("target", "source")[rng.integers(2)]
        images[side] = hard_kinds.inverted(rng, images[side], fills[side])
    elif kind == "artifacts":
        for side in one_or_both(rng):
            images[side] = hard_kinds.artifacts(rng, images[side], tissue_mask(images[side]))
    elif kind == "uneven-background":
        for side in one_or_both(rng):
            images[side] = hard_kinds.uneven_background(rng, images[side])
    elif kind == "extra-tissue":
        for side in one_or_both(rng):
            mask = tissue_mask(images[side])
            donor = donors[rng.integers(len(donors))]
            relit = hard_kinds.relight(donor, background_colour(donor), fills[side])
            area = rng.uniform(0.15, 0.4) * hard_kinds.section_area(mask)
            piece = hard_kinds.cut_fragment(rng, relit, tissue_mask(donor), area)
            images[side], shift = hard_kinds.place_beside(rng, images[side], mask, *piece, fills[side])
            to_image[side] = translation(*shift) @ to_image[side]
    case = Case(images["target"], apply(to_image["target"], lt), images["source"], apply(to_image["source"], ls),
                quality=quality)
    return case, angle, scale


def draw_cases(make, kind: str, count: int, rng, *args):
    """``count`` cases of one kind, half of them mirrored: (k, flip, (case, angle, scale) or None)."""
    flips = rng.permutation([i % 2 == 1 for i in range(count)])
    for k, flip in enumerate(flips):
        # a case no affine map can register (its landmark fit fails) tests nothing: redraw it,
        # and leave it out where 20 draws cannot make one (small crops of a poorly fitting pair)
        drawn = (make(kind, rng, *args, flip=bool(flip)) for _ in range(20))
        yield k, flip, next(((c, a, s) for c, a, s in drawn if c.oracle_rtre() <= ORACLE_LIMIT), None)


def stain(path: str) -> str:
    return Path(path).stem.split("-w35-")[-1].split("-les")[0]


def palest_images(spec, images: dict) -> set[str]:
    """Per tissue, the images whose tissue is faintest (highest mean grey level inside their tissue mask)."""
    level = {path: float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[tissue_mask(image)].mean())
             for path, image in images.items()}
    tissues = {}
    for pair in spec["pairs"]:
        tissues.setdefault(pair.get("tissue", ""), set()).update((pair["source"], pair["target"]))
    return {path for paths in tissues.values() for path in sorted(paths, key=level.get)[-PALEST:]}


def donors_for(pair, spec, images: dict) -> list[np.ndarray]:
    """Images to cut extra tissue from: another tissue's where the spec has several, else another pair's."""
    tissue_of = {p[side]: p.get("tissue", "") for p in spec["pairs"] for side in ("source", "target")}
    others = [path for path in images if tissue_of[path] != pair.get("tissue", "")]
    others = others or [path for path in images if path not in (pair["source"], pair["target"])] or list(images)
    return [images[path] for path in others]


def write_case(out: Path, name: str, case: Case) -> dict:
    """Save a case's images and landmarks; the pairs-table columns that name them."""
    files = {side: f"{name}__{side}" for side in ("target", "source")}
    for (side, image, points), quality in zip((("target", case.target, case.target_points),
                                               ("source", case.source, case.source_points)), case.quality):
        cv2.imwrite(str(out / f"images/{files[side]}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        write_landmarks(out / f"landmarks/{files[side]}.csv", points)
    th, tw = case.target.shape[:2]
    return {"Target image": f"images/{files['target']}.jpg", "Source image": f"images/{files['source']}.jpg",
            "Target landmarks": f"landmarks/{files['target']}.csv",
            "Source landmarks": f"landmarks/{files['source']}.csv",
            "Image size [pixels]": f"({th}, {tw})", "Image diagonal [pixels]": f"{math.hypot(th, tw):.1f}"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--part", choices=sorted(SEEDS), required=True)
    parser.add_argument("--spec", type=Path, default=SPEC, help="the dataset (default: the shared lung-lesion-3)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds (default: all)")
    parser.add_argument("--seed", type=int, default=None,
                        help="another seed for more development cases (default: the part's own seed)")
    parser.add_argument("--per-kind", type=int, default=None,
                        help="cases per stain pair and kind (default: 2 for dev, 3 for final; pale: pale pairs only)")
    args = parser.parse_args(argv)
    kinds = set(args.kinds.split(","))
    if kinds - set(KINDS):
        parser.error(f"unknown kinds {', '.join(sorted(kinds - set(KINDS)))}; the kinds: {', '.join(KINDS)}")
    per_kind = args.per_kind or {"dev": 2, "final": 3}[args.part]
    seed = SEEDS[args.part] if args.seed is None else args.seed
    rng = np.random.default_rng(seed)
    # every later kind has a stream of its own, so that adding or choosing kinds changes no other kind's cases
    new_rngs = {kind: np.random.default_rng([seed, zlib.crc32(kind.encode())]) for kind in NEW_KINDS}
    spec = json.loads(args.spec.read_text())
    root = args.spec.parent / spec.get("root", "")
    images = {path: cv2.imread(str(root / path), cv2.IMREAD_COLOR)
              for pair in spec["pairs"] for path in (pair["source"], pair["target"])}
    pale = palest_images(spec, images)
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "landmarks").mkdir(exist_ok=True)
    rows, skipped = [], []
    for pair in spec["pairs"]:
        target, source = images[pair["target"]], images[pair["source"]]
        lt, ls = (read_landmarks(root / pair[side]) * pair.get("landmark_scale", 1.0)
                  for side in ("target_landmarks", "source_landmarks"))
        drawn = []
        if kinds & set(OLD_KINDS):
            # the first kinds share one stream, as their published cases did: each is drawn even when not asked for
            pale_pair = {pair["source"], pair["target"]} <= pale
            for kind in OLD_KINDS:
                count = per_kind * (4 if pale_pair else 0) if kind == "pale" else per_kind
                cases = list(draw_cases(make_case, kind, count, rng, target, source, lt, ls))
                drawn += [(kind, *case) for case in cases if kind in kinds]
        donors = donors_for(pair, spec, images)
        for kind in (kind for kind in NEW_KINDS if kind in kinds):
            drawn += [(kind, *case) for case in
                      draw_cases(make_new_case, kind, per_kind, new_rngs[kind], target, source, lt, ls, donors)]
        for kind, k, flip, fit in drawn:
            case_name = f"{pair['name']}__{kind}{k}"
            if fit is None:
                skipped.append(case_name)
                continue
            case, angle, scale = fit
            rows.append({**write_case(out, case_name, case), "Case": case_name, "Tissue": pair.get("tissue", ""),
                         "Kind": kind, "Rotation [deg]": f"{angle:.1f}", "Scale": f"{scale:.3f}", "Flip": int(flip)})
    with open(out / "pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} cases ({args.part}; palest stains: {', '.join(sorted(stain(p) for p in pale))}) written to "
          f"{out}; left out (no affine fit within {ORACLE_LIMIT}): {', '.join(skipped) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
