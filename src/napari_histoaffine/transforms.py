"""The one transform convention of napari-histoaffine, and every operation on it.

Convention
----------
* A transform is a 3×3 homogeneous ``float64`` matrix ``A``.
* It acts on column vectors ``(x, y, 1)`` where **x is the column and y the row**, in pixels,
  with the centre of pixel ``[row, col]`` at ``(x=col, y=row)``. This is the order of the
  ANHIR landmark files (``,X,Y``).
* A registration matrix maps a point of the **moving** image to the same structure in the
  **fixed** image: ``p_fixed = A @ p_moving``. Points of the moving image are therefore
  mapped with ``A`` itself; warping the moving image onto the fixed grid samples the moving
  image at ``inv(A) @ p_fixed`` for every fixed pixel.
* napari orders axes ``(row, col)``: :func:`xy_to_rowcol` converts a matrix to napari's order
  (swap the first two rows and columns); it is its own inverse.
* ``torch.nn.functional.grid_sample`` works in normalised coordinates ``[-1, 1]`` with
  ``align_corners=False``: :func:`pixel_to_normalized` gives the matrix of that change of
  coordinates for an image shape; :func:`to_theta` turns a registration matrix into the
  ``theta`` that :func:`torch.nn.functional.affine_grid` expects.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_CV2_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)}  # warpAffine's own
_SWAP = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def identity() -> np.ndarray:
    """The identity transform."""
    return np.eye(3)


def compose(*matrices: np.ndarray) -> np.ndarray:
    """Matrix that applies ``matrices`` left to right: ``compose(A, B)`` is A first, then B.

    Any of them may be a stack ``(N, 3, 3)``; the result is then the stack of compositions.
    """
    if not matrices:
        return identity()
    out = np.array(matrices[0], float)
    for m in matrices[1:]:
        out = np.asarray(m, float) @ out
    return out


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse transform."""
    return np.linalg.inv(np.asarray(matrix, float))


def translation(tx: float, ty: float) -> np.ndarray:
    """Shift by ``(tx, ty)`` pixels."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float | None = None) -> np.ndarray:
    """Scale about the origin (pixel-centre convention: ``x -> sx * x``)."""
    sy = sx if sy is None else sy
    return np.diag([float(sx), float(sy), 1.0])


def rotation(angle_deg: float, center_xy=(0.0, 0.0)) -> np.ndarray:
    """Counter-clockwise rotation in the displayed image (y points down) about ``center_xy``.

    Positive angles turn the image counter-clockwise on screen, as in ``skimage.transform.rotate``.
    """
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    cx, cy = center_xy
    return compose(translation(-cx, -cy), rot, translation(cx, cy))


def mirror_x(center_x: float = 0.0) -> np.ndarray:
    """Left-right mirror about the vertical line ``x = center_x``."""
    return np.array([[-1.0, 0.0, 2.0 * center_x], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_and_mirror(matrix: np.ndarray) -> tuple[float, bool]:
    """Angle (as :func:`rotation` takes it, in [0, 360)) and mirror state of the rotation closest to ``matrix``.

    The mirror, where the linear part has a negative determinant, is taken as applied first, as
    in the pose search's candidates: ``mirror_x`` then the rotation.
    """
    linear = np.asarray(matrix, float)[:2, :2]
    mirrored = bool(np.linalg.det(linear) < 0)
    if mirrored:
        linear = linear @ np.diag([-1.0, 1.0])
    u, _, vt = np.linalg.svd(linear)
    closest = u @ vt
    return float(np.degrees(np.arctan2(closest[0, 1], closest[0, 0])) % 360.0), mirrored


def angle_difference(a_deg: float, b_deg: float) -> float:
    """Smallest absolute difference of two angles in degrees (0–180)."""
    return abs((a_deg - b_deg + 180.0) % 360.0 - 180.0)


def resample_matrix(from_shape, to_shape) -> np.ndarray:
    """Pixel coordinates of an image of ``from_shape`` → those of the same image resized to ``to_shape``.

    Shapes are ``(rows, cols, ...)``. Pixel centres map to pixel centres (as ``skimage.transform.resize``).
    """
    sy = to_shape[0] / from_shape[0]
    sx = to_shape[1] / from_shape[1]
    return compose(translation(0.5, 0.5), scaling(sx, sy), translation(-0.5, -0.5))


def xy_to_rowcol(matrix: np.ndarray) -> np.ndarray:
    """Convert between the (x, y) order used here and napari's (row, col) order (self-inverse)."""
    return _SWAP @ np.asarray(matrix, float) @ _SWAP


def apply_to_points(matrix: np.ndarray, points_xy) -> np.ndarray:
    """Map an ``(n, 2)`` array of ``(x, y)`` points; returns ``(n, 2)`` float64."""
    pts = np.asarray(points_xy, float).reshape(-1, 2)
    m = np.asarray(matrix, float)
    return pts @ m[:2, :2].T + m[:2, 2]


def fit_affine(source_xy, target_xy) -> np.ndarray:
    """The least-squares affine matrix mapping ``(n, 2)`` source points onto target points (n ≥ 3)."""
    source = np.asarray(source_xy, float).reshape(-1, 2)
    design = np.hstack([source, np.ones((len(source), 1))])
    solution, *_ = np.linalg.lstsq(design, np.asarray(target_xy, float).reshape(-1, 2), rcond=None)
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def warp_image(image: np.ndarray, matrix: np.ndarray, output_shape, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Warp a moving image onto a grid of ``output_shape`` (rows, cols) with ``p_out = matrix @ p_in``.

    Works for 2-D images and for channel-last images ``(rows, cols, channels)``; float32 out.
    """
    image = np.asarray(image)
    out_shape = tuple(int(v) for v in output_shape[:2])
    if order == 1:
        return sample_bilinear(image, invert(matrix), out_shape, cval)
    from scipy import ndimage  # imported here: only higher-order warps need it

    inverse_rc = xy_to_rowcol(invert(matrix))

    def warp_plane(plane):
        return ndimage.affine_transform(
            plane.astype(np.float32, copy=False), inverse_rc[:2, :2], offset=inverse_rc[:2, 2],
            output_shape=out_shape, order=order, cval=cval, mode="constant")

    if image.ndim == 2:
        return warp_plane(image)
    return np.stack([warp_plane(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def sample_bilinear(image: np.ndarray, out_to_image: np.ndarray, shape, fill=0.0, dtype=np.float32) -> np.ndarray:
    """Bilinear samples of ``image`` at ``out_to_image @ (x, y, 1)`` for every output pixel; ``fill`` outside.

    Pixel centres at integers, as everywhere here; ``fill`` is a value or one per channel, blended in
    over the one-pixel rim at the image's edge. OpenCV's ``warpAffine`` (fixed-point weights, 1/32 px)
    is 4× faster than torch's ``grid_sample`` and works on 8- and 16-bit pixels directly; an integer
    ``dtype`` of another input is rounded and clipped to its range. Sides up to 32767 px (OpenCV's limit).
    """
    import cv2  # imported here: only image warps need it

    dtype = np.dtype(dtype)
    source = np.asarray(image)
    if source.dtype != dtype or dtype not in _CV2_DTYPES:
        source = source.astype(np.float32)
    if max(source.shape[:2]) > 32767:
        raise ValueError(f"image of {source.shape[0]}x{source.shape[1]} px: sample_bilinear takes sides up to 32767 px")
    rows, cols = (int(v) for v in shape[:2])
    planes = source.reshape(*source.shape[:2], -1)
    fills = np.broadcast_to(np.asarray(fill, float), (planes.shape[2],))
    parts = []
    for c0 in range(0, planes.shape[2], 4):  # OpenCV warps up to 4 channels at a time
        part = cv2.warpAffine(np.ascontiguousarray(planes[..., c0:c0 + 4]), np.asarray(out_to_image, float)[:2],
                              (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in fills[c0:c0 + 4]))
        parts.append(part.reshape(rows, cols, -1))
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
    out = out.reshape(rows, cols, *source.shape[2:]) if source.ndim == 3 else out.reshape(rows, cols)
    if out.dtype == dtype:
        return out
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype)


def pixel_to_normalized(shape) -> np.ndarray:
    """Pixel ``(x, y)`` of an image of ``shape`` → ``grid_sample`` coordinates (``align_corners=False``)."""
    h, w = shape[0], shape[1]
    return np.array([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=64)
def _normalized_to_pixel(rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`pixel_to_normalized`, computed once per shape (theta conversions need it every step)."""
    out = invert(pixel_to_normalized((rows, cols)))
    out.flags.writeable = False  # shared by every caller
    return out


def to_theta(matrix: np.ndarray, moving_shape, fixed_shape) -> np.ndarray:
    """``affine_grid`` theta (2×3) that warps the moving image onto the fixed grid for ``matrix``.

    A stack of matrices ``(N, 3, 3)`` gives a stack of thetas ``(N, 2, 3)``.
    """
    theta = compose(_normalized_to_pixel(int(fixed_shape[0]), int(fixed_shape[1])), invert(matrix),
                    pixel_to_normalized(moving_shape))
    return theta[..., :2, :]


def from_theta(theta, moving_shape, fixed_shape) -> np.ndarray:
    """Inverse of :func:`to_theta`: registration matrix (moving → fixed pixels) from a 2×3 theta.

    A stack of thetas ``(N, 2, 3)`` gives a stack of matrices ``(N, 3, 3)``.
    """
    theta = np.asarray(theta, float)
    square = np.zeros(theta.shape[:-2] + (3, 3)) if theta.ndim > 2 else np.zeros((3, 3))
    square[..., :2, :], square[..., 2, 2] = theta.reshape(square[..., :2, :].shape), 1.0
    return invert(compose(pixel_to_normalized(fixed_shape), square,
                          _normalized_to_pixel(int(moving_shape[0]), int(moving_shape[1]))))


def grid_coordinates(h: int, w: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``grid_sample`` x coordinates of every stride-th column, and y of every stride-th row, of an ``h × w`` grid.

    The values torch's own float32 arithmetic gives, computed in NumPy (a fifth of torch's time).
    """
    one, two = np.float32(1.0), np.float32(2.0)
    xs = (two * np.arange(0, w, stride, dtype=np.float32) + one) / np.float32(w) - one
    ys = (two * np.arange(0, h, stride, dtype=np.float32) + one) / np.float32(h) - one
    return xs, ys


@functools.lru_cache(maxsize=32)  # a registration uses about ten; a batch of differently sized pairs must not keep all
def _base_grid(h: int, w: int, stride: int) -> torch.Tensor:
    """``(rows, cols, 3)`` homogeneous ``grid_sample`` coordinates of every stride-th pixel of an ``h × w`` grid."""
    import torch

    xs, ys = grid_coordinates(h, w, stride)
    grid = np.empty((ys.size, xs.size, 3), np.float32)
    grid[..., 0], grid[..., 1], grid[..., 2] = xs, ys[:, None], 1.0
    with torch.inference_mode(False):  # a grid cached during inference must still serve autograd later
        return torch.from_numpy(grid)


def warp_tensor(images: torch.Tensor, theta: torch.Tensor, output_hw, stride: int = 1) -> torch.Tensor:
    """Batched bilinear warp of ``(N, C, H, W)`` images by ``(N, 2, 3)`` thetas onto ``output_hw``; zeros outside.

    Equal to ``grid_sample(images, affine_grid(theta, ...))`` with ``align_corners=False``, but the
    sampling grid is one matrix product of a cached homogeneous base grid with all the thetas,
    several times faster than ``affine_grid`` (or elementwise products) on the CPU and differentiable
    in ``theta`` alike. ``stride`` samples only every stride-th row and column of the output grid.
    """
    import torch.nn.functional as F  # imported here: reading files and warping slides need no torch

    base = _base_grid(int(output_hw[0]), int(output_hw[1]), int(stride))
    # every theta at once as the columns of one (3, 2N) matrix: one plain matrix product (a broadcast
    # batched product copies the base grid N times first and is several times slower)
    n, rows, cols = theta.shape[0], base.shape[0], base.shape[1]
    columns = theta.to(images.dtype).permute(2, 0, 1).reshape(3, 2 * n)
    grid = (base.to(images.dtype).view(rows * cols, 3) @ columns).view(rows * cols, n, 2).transpose(0, 1)
    grid = grid.reshape(n, rows, cols, 2)
    if images.shape[0] == 1 and theta.shape[0] > 1:
        images = images.expand(theta.shape[0], -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
