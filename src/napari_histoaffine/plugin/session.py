"""One registration shown in napari, without Qt: the model the Register dock is a view of.

As in napari-animation, the state lives in a plain object and every Qt view in ``_qt``: a
:class:`RegistrationSession` holds the picked layers, the shown result, the arrays it came from
(for reruns from another pose), the "(registered)" landmarks, the tissue-mask layers and each
changed layer's original look. The user's layers are never modified except their ``affine`` and
``opacity``, and :meth:`RegistrationSession.reset` puts back exactly what they had. The dock runs
the engine in workers and shows this state; tests drive it with bare napari layers and no viewer.
napari's layer classes are imported only where a layer is made (they pull in pint).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from napari.utils.events import EmitterGroup

from .. import transforms
from ..errors import InputError
from ..evaluation.metrics import image_diagonal, tre, tre_um
from ..files.atomic import atomic_write, write_json
from ..files.tables import write_landmarks
from ..files.transform_files import elastix_affine_text, itk_tfm_text, read_transform_file
from ..registration.options import RegistrationOptions
from ..registration.results import RegistrationResult
from ..warp import warp_steps
from .annotations import SECTION
from .landmark_layers import number_landmarks
from .layer_transforms import (
    SavedLooks,
    data_to_world_matrix,
    fit_affine,
    layer_matrices,
    moving_layer_affine,
    pair_arrays,
    points_between,
    rowcol_to_xy,
)
from .readers import layer_pixel_size_um

OVERLAY_OPACITY = 0.5  # a registered moving layer over its fixed one
MASK_OPACITY = 0.35


def same_layer(a, b) -> bool:
    """Identity of layers (plugins see napari's proxies, so ``is`` does not work)."""
    return a is not None and b is not None and a.unique_id == b.unique_id


class PickedLayers(NamedTuple):
    """The layers of one registration: fixed and moving image, and their landmark Points layers (or None)."""

    fixed: object
    moving: object
    fixed_points: object = None
    moving_points: object = None


@dataclass(frozen=True)
class RegistrationInputs:
    """What the engine gets for picked layers (both arrays at one pixel size); kept for reruns from another pose."""

    moving: np.ndarray
    fixed: np.ndarray
    options: RegistrationOptions
    moving_full_shape: tuple[int, int]
    fixed_full_shape: tuple[int, int]

    @classmethod
    def from_layers(cls, picked: PickedLayers, options: RegistrationOptions) -> RegistrationInputs:
        """The image layers' pixels at one common pixel size; raises InputError for unusable pixels (naming the
        layer of a blank, uniform or tiny image at once, before a worker starts)."""
        from ..registration.checks import check_image  # torch only once a registration starts

        (fixed, fixed_full), (moving, moving_full) = pair_arrays((picked.fixed, picked.moving), options.working_size)
        check_image(moving, "moving", picked.moving.name, moving_full)
        check_image(fixed, "fixed", picked.fixed.name, fixed_full)
        return cls(moving, fixed, options, moving_full, fixed_full)

    def keywords(self, **extra) -> dict:
        """``register_steps``'s keyword arguments for these arrays, plus ``extra`` (``candidate=`` or ``start=``)."""
        return {"options": self.options, "moving_full_shape": self.moving_full_shape,
                "fixed_full_shape": self.fixed_full_shape, **extra}


class LandmarkErrors(NamedTuple):
    """TRE of each landmark pair in fixed pixels, the fixed image's diagonal (rTRE = TRE / diagonal), the
    landmarks' own numbers (the ones napari's labels show; None: 0, 1, …) and the TRE in µm (None unless the
    fixed layer's file states its pixel size)."""

    tre: np.ndarray
    diagonal: float
    ids: object = None
    tre_um: np.ndarray | None = None


def show_registered(moving, matrix, fixed_data_to_world) -> None:
    """Show the ``moving`` layer registered by ``matrix`` (moving → fixed pixels, ``(x, y)``) onto the fixed
    layer whose data → world matrix is given: through its affine, half transparent (see layer_transforms)."""
    moving.affine = moving_layer_affine(matrix, fixed_data_to_world, layer_matrices(moving)[0])
    moving.opacity = OVERLAY_OPACITY


class RegistrationSession:
    """The registration shown on napari layers, and everything done to it by hand.

    ``layers`` is the napari layer list (``viewer.layers``) the session adds its own layers to and
    watches: removing a registered image layer drops the result (:attr:`events` ``.dropped``, with the
    layer's name as ``value``). ``events.matrix`` fires whenever the shown matrix changes,
    ``events.landmarks`` whenever the landmark errors may have. ``adjusted`` says why the shown matrix
    is not the engine's: None, ``"refit"`` (from landmarks) or ``"by hand"``.
    """

    def __init__(self, layers):
        self.layers = layers
        self.events = EmitterGroup(source=self, matrix=None, landmarks=None, dropped=None)
        self.picked: PickedLayers | None = None
        self.inputs: RegistrationInputs | None = None
        self.result: RegistrationResult | None = None
        self.adjusted: str | None = None
        self.registered_points = None  # the moving landmarks mapped onto the fixed layer's grid (a Points layer)
        self.annotations: list = []  # annotation layers bound to the moving section: they follow it
        self.mask_layers: list = []
        self.looks = SavedLooks()
        self._moving_world0 = None  # the moving image's data → world before the session changed it
        self.landmarks_gone: str | None = None  # why the landmark pair was dropped (a layer of it was removed)
        self._connections: list[tuple] = []
        layers.events.removed.connect(self._on_layer_removed)

    # ---------------------------------------------------------------- showing a registration
    def show(self, picked: PickedLayers, inputs: RegistrationInputs, result: RegistrationResult) -> None:
        """Make ``result`` (computed from ``inputs``) the shown registration of ``picked``.

        Raises InputError when one of the layers was removed meanwhile (nothing is applied then).
        """
        picked = PickedLayers(*picked)
        if any(layer is not None and layer not in self.layers for layer in picked):
            raise InputError("A layer of this registration was removed while it ran; nothing was applied")
        self._disconnect()
        self.looks.keep(picked.moving)
        # the moving landmarks and the annotation layers bound to the moving section follow it while it is registered
        self.annotations = [layer for layer in self.layers if layer.metadata.get(SECTION) == picked.moving.name
                            and not same_layer(layer, picked.moving_points)]
        for layer in [picked.moving_points, *self.annotations]:
            if layer is not None:
                self.looks.keep(layer)
        self._moving_world0 = self.looks.data_to_world(picked.moving)
        self.picked, self.inputs, self.result = picked, inputs, result
        if picked.fixed_points is not None:
            self._connect(picked.fixed_points.events.data, self._landmarks_changed)
        if picked.moving_points is not None:
            self._connect(picked.moving_points.events.data, self._update_registered_points)
        for layer in picked[2:]:  # numbers that never repeat, set before the handlers above read them
            if layer is not None:
                number_landmarks(layer)
        self.landmarks_gone = None
        self.apply_matrix(result.matrix)

    def show_rerun(self, result: RegistrationResult) -> bool:
        """Show a rerun's result on the same layers; False (nothing shown) when the registration was dropped
        (Reset, or a layer removed) while it ran."""
        if self.result is None:
            return False
        self.result = result
        self.apply_matrix(result.matrix)
        return True

    def apply_transform_file(self, path, picked: PickedLayers, inputs: RegistrationInputs) -> None:
        """Show a saved transform (ours, elastix or ITK) of ``picked``: it has no verdict until a rerun from it
        (``start=``) judges it. Raises InputError for an unreadable file."""
        matrix = read_transform_file(path)
        angle, mirrored = transforms.rotation_and_mirror(matrix)
        result = RegistrationResult(matrix, inputs.moving_full_shape, inputs.fixed_full_shape, ["imported"], {},
                                    math.nan, math.nan, angle, mirrored, [], tissue_overlap=math.nan)
        self.show(picked, inputs, result)

    def apply_matrix(self, matrix, adjusted: str | None = None) -> None:
        """Show ``matrix`` (moving → fixed full-resolution pixels, ``(x, y)``) through the moving layer's affine;
        the moving landmarks follow it through the moving image's data."""
        fixed, moving, _, moving_pts = self.picked
        self.result = replace(self.result, matrix=np.asarray(matrix, float))
        self.adjusted = adjusted
        show_registered(moving, matrix, data_to_world_matrix(fixed))
        for layer in [moving_pts, *self.annotations]:
            if layer is not None and layer in self.layers:
                self._follow(layer)
        self.events.matrix()
        self._update_registered_points()

    def _follow(self, layer) -> None:
        """Show ``layer`` (drawn on the moving section as it was before the session) with the shown matrix."""
        to_moving_data = np.linalg.inv(self._moving_world0) @ self.looks.data_to_world(layer)
        layer.affine = (data_to_world_matrix(self.picked.fixed) @ transforms.xy_to_rowcol(self.result.matrix)
                        @ to_moving_data @ np.linalg.inv(layer_matrices(layer)[0]))

    def bind(self, layer) -> None:
        """Bind an annotation layer to the shown moving section: as shown now, it lies on that section as shown now;
        from here on it follows the section, and Reset takes it back with the section (InputError: none shown)."""
        if self.result is None:
            raise InputError("No registration is shown: nothing to bind the annotations to")
        layer.metadata[SECTION] = self.picked.moving.name
        if not any(same_layer(layer, other) for other in self.annotations):
            shown = data_to_world_matrix(layer)
            unregistered = self._moving_world0 @ np.linalg.inv(data_to_world_matrix(self.picked.moving)) @ shown
            layer.affine = unregistered @ np.linalg.inv(layer_matrices(layer)[0])
            self.looks.keep(layer)
            self.annotations.append(layer)
        self._follow(layer)

    def correct(self, about_centre) -> None:
        """A correction by hand: ``about_centre`` (a flip, turn or shift in fixed pixels about the moved section's
        centre) applied after the shown matrix."""
        rows, cols = self.result.moving_shape
        cx, cy = transforms.apply_to_points(self.result.matrix, [[(cols - 1) / 2, (rows - 1) / 2]])[0]
        self.apply_matrix(transforms.compose(self.result.matrix, transforms.translation(-cx, -cy), about_centre,
                                             transforms.translation(cx, cy)), adjusted="by hand")

    def refit_from_landmarks(self) -> None:
        """The least-squares affine of the landmark pairs (as they are now) is shown; raises InputError."""
        fixed, _, fixed_pts, moving_pts = self.picked
        if fixed_pts is None or moving_pts is None:
            raise InputError("Refit needs both a fixed and a moving landmark layer")
        target = points_between(fixed_pts.data, data_to_world_matrix(fixed_pts), data_to_world_matrix(fixed))
        source = points_between(moving_pts.data, self.looks.data_to_world(moving_pts), self._moving_world0)
        self.apply_matrix(fit_affine(rowcol_to_xy(source), rowcol_to_xy(target)), adjusted="refit")

    def toggle_overlay(self) -> None:
        """The moving layer half transparent over the fixed one, or opaque."""
        if self.picked is not None:
            moving = self.picked.moving
            moving.opacity = 1.0 if moving.opacity < 1.0 else OVERLAY_OPACITY

    def inspection_pair(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(fixed array, moving array, matrix between them, fixed array → fixed layer data pixels)``: the arrays
        the registration used and the shown matrix at their pixel sizes (``(x, y)``)."""
        inputs = self.inputs
        fixed_to_full = transforms.resample_matrix(inputs.fixed.shape, inputs.fixed_full_shape)
        moving_to_full = transforms.resample_matrix(inputs.moving.shape, inputs.moving_full_shape)
        between = transforms.compose(moving_to_full, self.result.matrix, transforms.invert(fixed_to_full))
        return inputs.fixed, inputs.moving, between, fixed_to_full

    # ---------------------------------------------------------------- landmarks
    def mapped_landmarks(self) -> np.ndarray | None:
        """The moving landmarks mapped by the shown matrix into fixed image pixels ``(x, y)``; None without them."""
        moving_pts = self.picked.moving_points if self.picked is not None else None
        if moving_pts is None:
            return None
        in_moving = points_between(moving_pts.data, self.looks.data_to_world(moving_pts), self._moving_world0)
        return transforms.apply_to_points(self.result.matrix, rowcol_to_xy(in_moving))

    def landmark_errors(self) -> LandmarkErrors:
        """The error of every landmark pair (fixed vs registered moving landmarks as they are now, in fixed
        pixels); raises InputError saying why there are none."""
        if self.picked is None:
            raise InputError("No registration is shown.")
        fixed, _, fixed_pts, _ = self.picked
        registered = self.registered_points
        if fixed_pts is None or registered is None or registered not in self.layers:
            raise InputError(self.landmarks_gone or "Choose fixed and moving landmark layers to see the error per "
                             "landmark.")
        to_fixed = data_to_world_matrix(fixed)
        target = points_between(fixed_pts.data, data_to_world_matrix(fixed_pts), to_fixed)
        moved = points_between(registered.data, data_to_world_matrix(registered), to_fixed)
        try:
            errors = tre(moved, target)
        except InputError as exc:
            raise InputError(f"No error shown: {exc}.") from exc
        ids = fixed_pts.features["index"] if "index" in fixed_pts.features else None
        size = layer_pixel_size_um(fixed)
        microns = tre_um(rowcol_to_xy(moved), rowcol_to_xy(target), size) if size else None
        return LandmarkErrors(errors, image_diagonal(self.result.fixed_shape), ids, microns)

    def _update_registered_points(self, event=None) -> None:
        """(Re)build the "(registered)" Points layer: the mapped moving landmarks on the fixed layer's grid."""
        mapped = self.mapped_landmarks()
        if mapped is not None:
            fixed, _, _, moving_pts = self.picked
            layer = self.registered_points
            if layer is None or layer not in self.layers:
                from napari.layers import Points

                own, extra = layer_matrices(fixed)
                size = moving_pts.size.mean() if len(moving_pts.data) else 12
                layer = self.registered_points = Points(
                    rowcol_to_xy(mapped), name=f"{moving_pts.name} (registered)", size=size, face_color="magenta",
                    border_color="white", symbol="cross", affine=extra @ own)
                layer.events.data.connect(self._landmarks_changed)  # edits of the mapped points change the errors
                self.layers.append(layer)
            else:
                layer.data = rowcol_to_xy(mapped)
        self._landmarks_changed()

    def _landmarks_changed(self, event=None) -> None:
        self.events.landmarks()

    # ---------------------------------------------------------------- tissue masks
    def show_masks(self) -> None:
        """The tissue masks the registration used as Labels layers over their images (fixed 1, moving 2)."""
        from napari.layers import Labels

        masks = self.result.masks if self.result is not None else None
        if masks is None:
            raise InputError("This result has no tissue masks: it was not registered here")
        self.remove_masks()
        fixed, moving = self.picked[:2]
        for layer, mask, to_full, label in ((fixed, masks.fixed, masks.fixed_to_full, 1),
                                            (moving, masks.moving, masks.moving_to_full, 2)):
            affine = data_to_world_matrix(layer) @ transforms.xy_to_rowcol(to_full)
            mask_layer = Labels(mask.astype(np.uint8) * label, affine=affine, opacity=MASK_OPACITY,
                                name=f"{layer.name} tissue mask")
            self.mask_layers.append(mask_layer)
            self.layers.append(mask_layer)

    def remove_masks(self) -> None:
        for layer in self.mask_layers:
            if layer in self.layers:
                self.layers.remove(layer)
        self.mask_layers = []

    # ---------------------------------------------------------------- reset
    def reset(self) -> None:
        """Every changed layer gets back its original affine and opacity; the session's own layers go."""
        self.looks.restore()
        self._disconnect()
        if self.registered_points is not None and self.registered_points in self.layers:
            self.layers.remove(self.registered_points)
        self.registered_points = None
        self.annotations = []
        self.remove_masks()
        self.picked = self.inputs = self.result = self.adjusted = None

    def _on_layer_removed(self, event) -> None:
        """A registered image layer that goes takes the result with it (the other layers are restored); a landmark
        layer of the pair that goes (or the "(registered)" one) takes the landmark errors with it."""
        gone = event.value
        if self.picked is not None and any(same_layer(gone, layer) for layer in self.picked[:2]):
            self.reset()
            self.events.dropped(value=gone.name)
        elif self.picked is not None and any(same_layer(gone, layer) for layer in (*self.picked[2:],
                                                                                   self.registered_points)):
            self._drop_landmarks(gone.name)

    def _drop_landmarks(self, name: str) -> None:
        """Unbind the landmark pair (nothing is computed for it any more); moving landmarks still shown follow the
        section as an annotation does, and ``events.landmarks`` tells the table why it is empty."""
        self._disconnect()
        moving_pts = self.picked.moving_points
        if moving_pts is not None and moving_pts in self.layers:
            self.annotations.append(moving_pts)
        self.picked = self.picked._replace(fixed_points=None, moving_points=None)
        registered, self.registered_points = self.registered_points, None
        if registered is not None and registered in self.layers:
            self.layers.remove(registered)
        self.landmarks_gone = f"Landmark layer '{name}' was removed: no error per landmark is computed."
        self.events.landmarks()

    def _connect(self, emitter, callback) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    def _disconnect(self) -> None:
        for emitter, callback in self._connections:
            emitter.disconnect(callback)
        self._connections = []

    # ---------------------------------------------------------------- export
    def export_transform(self, path) -> None:
        """Write the shown transform; the suffix chooses the format: ``.json`` as the CLI writes it, ``.tfm``
        an ITK transform, anything else elastix ``TransformParameters``."""
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return write_json(path, self.result.to_dict())
        text = (itk_tfm_text(self.result.matrix) if suffix == ".tfm"
                else elastix_affine_text(self.result.matrix, self.result.fixed_shape))
        with atomic_write(path) as f:
            f.write(text)

    def export_landmarks(self, path) -> None:
        """Write the mapped moving landmarks (fixed image pixels) as an ANHIR CSV; raises InputError without them."""
        mapped = self.mapped_landmarks()
        if mapped is None:
            raise InputError("No moving landmark layer was registered")
        write_landmarks(path, mapped)

    def slide_warp(self, out_path):
        """The moving layer's file warped at full resolution onto the fixed grid as a pyramidal OME-TIFF: a
        :func:`~napari_histoaffine.warp.warp_steps` generator (progress per block; closing it cancels and
        leaves no file). Raises InputError at once when the layer has no file on disk."""
        moving = self.picked.moving
        source = getattr(moving.source, "path", None)
        if not source or not Path(source).is_file():
            raise InputError(f"Layer '{moving.name}' has no file on disk to warp at full resolution")
        return warp_steps(source, self.result.matrix, self.result.fixed_shape, out_path,  # tagged with the fixed µm
                          pixel_size_um=layer_pixel_size_um(self.picked.fixed))
