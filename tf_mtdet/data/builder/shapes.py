"""A generated COCO-format "shapes" data set: the quickstart's embedded default.

Each image is a smooth random colour gradient with mild noise, over which
1-6 (by default) circles, squares and triangles of random colour, size,
position and rotation are painted one after another. Later shapes cover
earlier ones, so every annotation describes the *visible* part of its shape:
its polygons come from that visible mask, and instances left mostly hidden are
dropped (their fragments stay in the image, as unlabelled clutter does in real
data).

The classes differ in geometry, never in colour (colours are drawn
independently of the class), and sizes run from ~12 px to half the shorter
image side, so COCO small, medium and large instances all occur. That keeps
the task learnable by a tiny Mask R-CNN trained for a few CPU minutes while
leaving it far from trivial.

Output layout (written atomically)::

  out_dir/
    annotations.json          # COCO instances JSON, polygons only
    images/shapes_000000.jpg  # ...

Generation is deterministic: image `i` depends only on `(seed, i)` and the
generator parameters, so the same arguments reproduce byte-identical files,
and a larger `num_images` extends a smaller run without changing it.

This module deliberately imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

SHAPE_CLASSES: tuple[str, ...] = ('circle', 'square', 'triangle')
"""Class names; category id of `SHAPE_CLASSES[k]` is `k + 1`."""

ANNOTATIONS_FILE = 'annotations.json'
IMAGES_DIR = 'images'

# Bumped whenever the output for given arguments changes, so a cached data set
# can be told apart from one the current code would write.
GENERATOR_VERSION = 1

_JPEG_QUALITY = 90
_MIN_SIZE_PX = 12.0  # Smallest shape extent: below this JPEG smears it away.
_MAX_SIZE_FRAC = 0.5  # Largest extent, as a fraction of the shorter side.
_MIN_VISIBLE_FRACTION = 0.4  # Drop instances hidden more than this allows.
_MIN_VISIBLE_AREA = 20  # Never annotate fewer visible pixels than this.
_NOISE_STD = 6.0  # Mild per-pixel noise, so flat regions are not flat.
_GRADIENT_GRID = 3  # Coarse grid of random colours, upsampled to a gradient.
_GRADIENT_SPREAD = 60.0  # Max deviation of grid colours from the base colour.
_MIN_CONTRAST = 80.0  # Wanted RGB distance from what a shape is drawn over.
_COLOR_CANDIDATES = 8  # Colours tried per shape to reach that contrast.
_SUBPIXEL_BITS = 4  # cv2 `shift`: shapes are placed with 1/16 px precision.

# Shape side (or diameter) per unit "extent", chosen so all classes of one
# extent d cover the area of a circle of diameter d: size then means the same
# for every class, and no class is systematically smaller than another.
_SIDE_PER_EXTENT = {
    'circle': 1.0,
    'square': math.sqrt(math.pi) / 2.0,
    'triangle': math.sqrt(math.pi / math.sqrt(3.0)),
}
# Circumradius per unit side, used to keep every shape fully inside the image.
_CIRCUMRADIUS_PER_SIDE = {
    'circle': 0.5,
    'square': math.sqrt(0.5),
    'triangle': 1.0 / math.sqrt(3.0),
}


@dataclasses.dataclass(frozen=True)
class _Instance:
  """One annotated shape of a rendered image.

  Attributes:
    category_id: 1-based index into `SHAPE_CLASSES`.
    color: RGB fill colour (before noise), uint8 values.
    visible_mask: Boolean (height, width) mask of the pixels it shows.
    drawn_area: Pixels it covered when painted, before later shapes.
  """
  category_id: int
  color: tuple[int, int, int]
  visible_mask: np.ndarray
  drawn_area: int


@dataclasses.dataclass(frozen=True)
class _Rendered:
  """A rendered image with its kept instances, in painting order.

  Attributes:
    image: uint8 RGB array of shape (height, width, 3), as written to JPEG.
    instances: The kept (annotated) instances.
    num_dropped: Shapes painted but left unannotated (mostly hidden).
  """
  image: np.ndarray
  instances: list[_Instance]
  num_dropped: int


def _image_rng(seed: int, index: int) -> np.random.Generator:
  """Returns the generator for image `index`; independent of the image count."""
  return np.random.default_rng([seed, index])


def _background(rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
  """Returns a smooth random colour gradient as float32 (height, width, 3)."""
  base = rng.uniform(40.0, 215.0, size=3)
  grid = base + rng.uniform(-_GRADIENT_SPREAD, _GRADIENT_SPREAD,
                            size=(_GRADIENT_GRID, _GRADIENT_GRID, 3))
  grid = np.clip(grid, 0.0, 255.0).astype(np.float32)
  # Bicubic upsampling of a coarse grid gives gentle, non-linear gradients.
  out = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
  return np.clip(out, 0.0, 255.0)


def _shape_vertices(name: str, cx: float, cy: float, side: float,
                    angle: float) -> np.ndarray:
  """Returns (n, 2) float vertices of a regular square or triangle."""
  n = 4 if name == 'square' else 3
  radius = side * _CIRCUMRADIUS_PER_SIDE[name]
  theta = angle + 2.0 * np.pi * np.arange(n) / n
  return np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)],
                  axis=1)


def _draw_shape(mask: np.ndarray, name: str, cx: float, cy: float,
                side: float, angle: float) -> None:
  """Paints one shape (value 1) into a uint8 mask, with sub-pixel placement."""
  scale = 1 << _SUBPIXEL_BITS
  if name == 'circle':
    cv2.circle(mask, (int(round(cx * scale)), int(round(cy * scale))),
               int(round(side / 2.0 * scale)), 1, thickness=-1,
               lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  else:
    pts = np.round(_shape_vertices(name, cx, cy, side, angle) * scale)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1, lineType=cv2.LINE_8,
                 shift=_SUBPIXEL_BITS)


def _pick_color(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
  """Picks a fill colour that stands out from the mean colour it covers.

  A fixed number of candidates is always drawn, so the rng stream (and thus
  every later draw) does not depend on which candidate wins.
  """
  candidates = rng.integers(0, 256, size=(_COLOR_CANDIDATES, 3))
  dist = np.linalg.norm(candidates - under[None, :], axis=1)
  ok = np.flatnonzero(dist >= _MIN_CONTRAST)
  return candidates[ok[0] if ok.size else int(np.argmax(dist))]


def _render_image(rng: np.random.Generator, image_size: tuple[int, int],
                  min_shapes: int, max_shapes: int) -> _Rendered:
  """Renders one image and the visible masks of its kept instances.

  Args:
    rng: Source of all randomness for this image.
    image_size: (height, width).
    min_shapes: Fewest shapes painted.
    max_shapes: Most shapes painted.

  Returns:
    The image, kept instances in painting order, and the number dropped.
  """
  height, width = image_size
  canvas = _background(rng, height, width)
  # owner[y, x] = index of the shape painted last at that pixel, -1 if none.
  owner = np.full((height, width), -1, dtype=np.int16)
  num_shapes = int(rng.integers(min_shapes, max_shapes + 1))
  max_extent = _MAX_SIZE_FRAC * min(height, width)
  drawn = []  # (category_id, color, drawn_area) per painted shape.
  mask = np.zeros((height, width), dtype=np.uint8)
  for k in range(num_shapes):
    cls = int(rng.integers(len(SHAPE_CLASSES)))
    name = SHAPE_CLASSES[cls]
    # Uniform in extent (not log-uniform) so large shapes are not too rare.
    extent = rng.uniform(_MIN_SIZE_PX, max_extent)
    side = extent * _SIDE_PER_EXTENT[name]
    # Keep the whole circumcircle inside, so no shape is cut by the border.
    r = side * _CIRCUMRADIUS_PER_SIDE[name]
    cx = rng.uniform(r, width - r)
    cy = rng.uniform(r, height - r)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    mask.fill(0)
    _draw_shape(mask, name, cx, cy, side, angle)
    sel = mask.astype(bool)
    color = _pick_color(rng, canvas[sel].mean(axis=0))
    canvas[sel] = color
    owner[sel] = k
    drawn.append((cls + 1, tuple(int(c) for c in color), int(sel.sum())))
  noise = rng.standard_normal(size=canvas.shape, dtype=np.float32)
  image = np.clip(np.rint(canvas + _NOISE_STD * noise), 0, 255).astype(np.uint8)

  visible_areas = np.bincount(owner.ravel() + 1,
                              minlength=num_shapes + 1)[1:]
  instances = []
  for k, (category_id, color, drawn_area) in enumerate(drawn):
    visible = int(visible_areas[k])
    if (visible < _MIN_VISIBLE_AREA or
        visible < _MIN_VISIBLE_FRACTION * drawn_area):
      continue
    instances.append(_Instance(category_id, color, owner == k, drawn_area))
  return _Rendered(image, instances, num_shapes - len(instances))


def _splice_hole(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
  """Joins a hole into an outer ring through a zero-width slit.

  COCO unions the polygons of one annotation, so a hole cannot be its own
  polygon. Walking outer -> hole -> back along the same slit makes a single
  ring whose slit cancels out under pycocotools' rasterization (holes run the
  opposite way to outer rings, so even-odd and non-zero fills agree).
  """
  d2 = ((outer[:, None, :] - hole[None, :, :])**2).sum(axis=-1)
  i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
  return np.concatenate([outer[:i + 1], hole[j:], hole[:j + 1], outer[i:]])


def _mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
  """Converts a boolean mask to COCO polygons that rasterize back to it.

  Contours are traced on a 2x nearest-upsampled crop: its boundary pixel
  centres sit a quarter pixel inside the original pixel edges, so the polygon
  hugs the pixel boundary and pycocotools reproduces the mask (tracing the
  original pixel centres would lose up to a pixel on one side of each shape).

  Args:
    mask: Boolean (height, width) mask.

  Returns:
    Flat [x1, y1, x2, y2, ...] polygons in COCO pixel-corner coordinates,
    each with at least 3 points.
  """
  ys, xs = np.nonzero(mask)
  if ys.size == 0:
    return []
  y0, x0 = int(ys.min()), int(xs.min())
  crop = mask[y0:int(ys.max()) + 1, x0:int(xs.max()) + 1].astype(np.uint8)
  up = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)
  # 1 px of padding so contours never touch the array border.
  up = np.pad(up, 1)
  contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP,
                                         cv2.CHAIN_APPROX_SIMPLE)
  if hierarchy is None:
    return []
  hierarchy = hierarchy[0]
  polygons = []
  for k, contour in enumerate(contours):
    if hierarchy[k][3] != -1 or len(contour) < 3:
      continue  # Holes are spliced into their parent below.
    ring = contour.reshape(-1, 2)
    child = hierarchy[k][2]
    while child != -1:
      hole = contours[child].reshape(-1, 2)
      if len(hole) >= 3:
        ring = _splice_hole(ring, hole)
      child = hierarchy[child][0]
    # Undo padding and upsampling: up-pixel u has its centre at u/2 + 1/4.
    xy = (ring - 1).astype(np.float64) / 2.0 + 0.25
    xy += (x0, y0)
    polygons.append([float(v) for v in xy.ravel()])
  return polygons


def _annotation(polygons: list[list[float]], height: int,
                width: int) -> tuple[float, list[float]]:
  """Returns (area, bbox) of the polygons' union, as COCO evaluation sees it."""
  rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
  area = float(mask_utils.area(rle))
  bbox = [float(v) for v in mask_utils.toBbox(rle)]
  return area, bbox


def _write_jpeg(path: str, image: np.ndarray) -> None:
  """Writes an RGB array as a JPEG with fixed settings (byte-reproducible)."""
  Image.fromarray(image, mode='RGB').save(path, format='JPEG',
                                          quality=_JPEG_QUALITY)


def _check_args(num_images: int, seed: int, image_size: tuple[int, int],
                max_shapes: int, min_shapes: int) -> None:
  """Raises ValueError on arguments that cannot give a sensible data set."""
  if int(num_images) != num_images or num_images < 1:
    raise ValueError(f'num_images must be a positive integer, got {num_images}')
  if int(seed) != seed or seed < 0:
    raise ValueError(f'seed must be a non-negative integer, got {seed}')
  if len(image_size) != 2 or min(image_size) < 32:
    raise ValueError('image_size must be (height, width), both >= 32, got '
                     f'{image_size}')
  if not 0 <= min_shapes <= max_shapes or max_shapes < 1:
    raise ValueError('need 0 <= min_shapes_per_image <= max_shapes_per_image '
                     f'and max_shapes_per_image >= 1, got min={min_shapes}, '
                     f'max={max_shapes}')


def _check_out_dir(out_dir: str) -> None:
  """Raises FileExistsError unless `out_dir` is missing or an empty dir."""
  if os.path.isdir(out_dir):
    if os.listdir(out_dir):
      raise FileExistsError(
          f'output directory {out_dir!r} already exists and is not empty; '
          'remove it or choose another path')
  elif os.path.lexists(out_dir):
    raise FileExistsError(f'output path {out_dir!r} exists and is not a '
                          'directory')


def _build(tmp_dir: str, num_images: int, seed: int,
           image_size: tuple[int, int], max_shapes: int,
           min_shapes: int) -> dict[str, Any]:
  """Writes the data set into `tmp_dir`; returns counts for the summary."""
  height, width = image_size
  os.mkdir(os.path.join(tmp_dir, IMAGES_DIR))
  images, annotations = [], []
  per_class = dict.fromkeys(SHAPE_CLASSES, 0)
  # COCO evaluation's area ranges, counted so callers can see the mix.
  per_size = {'small': 0, 'medium': 0, 'large': 0}
  num_dropped = 0
  for i in range(num_images):
    rendered = _render_image(_image_rng(seed, i), image_size, min_shapes,
                             max_shapes)
    file_name = f'shapes_{i:06d}.jpg'
    _write_jpeg(os.path.join(tmp_dir, IMAGES_DIR, file_name), rendered.image)
    images.append({'id': i + 1, 'file_name': file_name, 'height': height,
                   'width': width})
    num_dropped += rendered.num_dropped
    for inst in rendered.instances:
      polygons = _mask_to_polygons(inst.visible_mask)
      if not polygons:
        continue  # Unreachable for kept masks; never emit an empty one.
      area, bbox = _annotation(polygons, height, width)
      annotations.append({
          'id': len(annotations) + 1, 'image_id': i + 1,
          'category_id': inst.category_id, 'segmentation': polygons,
          'area': area, 'bbox': bbox, 'iscrowd': 0})
      per_class[SHAPE_CLASSES[inst.category_id - 1]] += 1
      size = ('small' if area < 32**2 else
              'medium' if area < 96**2 else 'large')
      per_size[size] += 1
  dataset = {
      'info': {
          'description': 'tf_mtdet generated shapes data set',
          'generator': __name__,
          'generator_version': GENERATOR_VERSION,
          'num_images': num_images,
          'seed': seed,
          'image_size': [height, width],
          'min_shapes_per_image': min_shapes,
          'max_shapes_per_image': max_shapes,
          'min_size_px': _MIN_SIZE_PX,
          'max_size_frac': _MAX_SIZE_FRAC,
          'min_visible_fraction': _MIN_VISIBLE_FRACTION,
          'min_visible_area': _MIN_VISIBLE_AREA,
          'noise_std': _NOISE_STD,
          'jpeg_quality': _JPEG_QUALITY,
      },
      'licenses': [],
      'images': images,
      'annotations': annotations,
      'categories': [{'id': k + 1, 'name': name, 'supercategory': 'shape'}
                     for k, name in enumerate(SHAPE_CLASSES)],
  }
  with open(os.path.join(tmp_dir, ANNOTATIONS_FILE), 'w',
            encoding='utf-8') as f:
    f.write(json.dumps(dataset, sort_keys=True, separators=(',', ':')))
  return {'num_annotations': len(annotations), 'per_class_counts': per_class,
          'per_size_counts': per_size, 'num_dropped': num_dropped}


def make_shapes(out_dir: str, num_images: int, seed: int = 0,
                image_size: tuple[int, int] = (256, 320),
                max_shapes_per_image: int = 6,
                min_shapes_per_image: int = 1) -> dict[str, Any]:
  """Generates the shapes data set as COCO JSON plus JPEG images.

  Writes `out_dir/images/shapes_{i:06d}.jpg` and `out_dir/annotations.json`.
  Everything is built in a temporary directory next to `out_dir` and renamed
  into place only when complete, so an error leaves no partial output.

  Args:
    out_dir: Directory to create. It must not exist, or be an empty directory.
    num_images: Number of images (>= 1).
    seed: Non-negative seed; image `i` depends only on `(seed, i)` and the
      other arguments. Use different seeds for train and held-out splits.
    image_size: (height, width) of every image, both >= 32.
    max_shapes_per_image: Most shapes painted per image.
    min_shapes_per_image: Fewest shapes painted per image. With >= 1 every
      image has at least one annotation (the last shape painted is whole).

  Returns:
    Summary dict with `num_images`, `num_annotations`, `num_dropped` (shapes
    painted but mostly hidden, so not annotated), `per_class_counts` (name ->
    count), `per_size_counts` (COCO small/medium/large -> count), `out_dir`,
    `images_dir` and `annotations_file` (absolute paths).

  Raises:
    FileExistsError: `out_dir` exists and is not an empty directory.
    ValueError: An argument is out of range.
  """
  _check_args(num_images, seed, image_size, max_shapes_per_image,
              min_shapes_per_image)
  num_images, seed = int(num_images), int(seed)
  image_size = (int(image_size[0]), int(image_size[1]))
  out_dir = os.path.abspath(os.fspath(out_dir))
  _check_out_dir(out_dir)
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  # Same parent, so the final rename stays on one file system (atomic).
  tmp_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.tmp-',
                             dir=parent)
  try:
    counts = _build(tmp_dir, num_images, seed, image_size,
                    max_shapes_per_image, min_shapes_per_image)
    os.chmod(tmp_dir, 0o755)  # mkdtemp makes it private (0700).
    _check_out_dir(out_dir)  # It may have been filled while we were busy.
    try:
      # POSIX rename replaces an empty directory atomically.
      os.replace(tmp_dir, out_dir)
    except OSError as e:
      raise FileExistsError(
          f'could not move the generated data set to {out_dir!r}: {e}') from e
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return {
      'num_images': num_images,
      **counts,
      'out_dir': out_dir,
      'images_dir': os.path.join(out_dir, IMAGES_DIR),
      'annotations_file': os.path.join(out_dir, ANNOTATIONS_FILE),
  }
