"""SSD prior boxes (Caffe SSD's `PriorBox`, as LTD-SSD's prototxts set it).

Per location of level i: a square of side min_i, a square of side
sqrt(min_i * max_i), then for each aspect ratio r a box of width
min_i * sqrt(r) and height min_i / sqrt(r), and its flip (1 / r). Centres at
((x + 0.5) * step_i, (y + 0.5) * step_i) in input pixels. Anchors are laid
out as Model Garden's: {level: [H_l, W_l, 4 * A_l]} yxyx, anchor-major within
a location.
"""

import math
from typing import Mapping, Sequence, Union

import numpy as np
import tensorflow as tf

IntLike = Union[int, tf.Tensor]


def parse_aspect_ratios(aspect_ratios: Sequence[str]) -> list[list[float]]:
  """['2', '2,3'] -> [[2.0], [2.0, 3.0]] (config strings; '' = none)."""
  return [[float(r) for r in str(level).split(',') if r.strip()]
          for level in aspect_ratios]


def box_shapes(min_size: float, max_size: float,
               aspect_ratios: Sequence[float]) -> list[tuple[float, float]]:
  """(height, width) of the priors of one location, in prior order."""
  shapes = [(min_size, min_size)]
  if max_size:
    side = math.sqrt(min_size * max_size)
    shapes.append((side, side))
  for ratio in aspect_ratios:
    root = math.sqrt(ratio)
    shapes.append((min_size / root, min_size * root))
    shapes.append((min_size * root, min_size / root))
  return shapes


def level_shapes(config) -> list[list[tuple[float, float]]]:
  """Per level, the (height, width) of its priors, from `SSDAnchors`."""
  ratios = parse_aspect_ratios(config.aspect_ratios)
  lengths = {len(config.min_sizes), len(config.max_sizes), len(ratios),
             len(config.steps)}
  if len(lengths) != 1:
    raise ValueError(
        'ssd_anchors: min_sizes, max_sizes, aspect_ratios and steps need one '
        f'entry per level, got {len(config.min_sizes)}, '
        f'{len(config.max_sizes)}, {len(ratios)}, {len(config.steps)}')
  return [box_shapes(mn, mx, r) for mn, mx, r in
          zip(config.min_sizes, config.max_sizes, ratios)]


def num_anchors_per_location(config) -> list[int]:
  return [len(s) for s in level_shapes(config)]


def level_anchors(height: IntLike, width: IntLike, step: float,
                  shapes: Sequence[tuple[float, float]],
                  image_size: Sequence[IntLike] = (),
                  clip: bool = False) -> tf.Tensor:
  """The priors of one level.

  Args:
    height: Feature map height.
    width: Feature map width.
    step: Input pixels between neighbouring centres; 0: input size /
      feature size per axis (Caffe's `PriorBox` without a step).
    shapes: (height, width) of each prior of a location.
    image_size: [H, W] of the input, for `clip` and automatic steps.
    clip: Clip the priors to the image.

  Returns:
    [height, width, 4 * len(shapes)] float32 yxyx input pixels.
  """
  if step:
    step_y = step_x = float(step)
  else:
    step_y = tf.cast(image_size[0], tf.float32) / tf.cast(height, tf.float32)
    step_x = tf.cast(image_size[1], tf.float32) / tf.cast(width, tf.float32)
  cy = (tf.cast(tf.range(height), tf.float32) + 0.5) * step_y
  cx = (tf.cast(tf.range(width), tf.float32) + 0.5) * step_x
  cy, cx = tf.meshgrid(cy, cx, indexing='ij')
  half = tf.constant(np.asarray(shapes, np.float32) / 2.0)  # [A, 2]
  centres = tf.stack([cy, cx], axis=-1)[:, :, tf.newaxis, :]  # [h, w, 1, 2]
  boxes = tf.concat([centres - half, centres + half], axis=-1)  # [h, w, A, 4]
  if clip:
    limit = tf.cast(tf.stack([image_size[0], image_size[1]] * 2), tf.float32)
    boxes = tf.clip_by_value(boxes, 0.0, limit)
  return tf.reshape(boxes, [height, width, 4 * len(shapes)])


def multilevel_anchors(config, feature_sizes: Mapping[str, Sequence[IntLike]],
                       image_size: Sequence[IntLike] = ()
                       ) -> dict[str, tf.Tensor]:
  """{level: [H_l, W_l, 4A_l]} for `feature_sizes` {level: (H_l, W_l)}, the
  levels in ascending order matched to the config's per-level entries."""
  levels = sorted(feature_sizes, key=int)
  shapes = level_shapes(config)
  if len(levels) != len(shapes):
    raise ValueError(f'ssd_anchors describe {len(shapes)} levels, the model '
                     f'has {len(levels)}: {levels}')
  return {level: level_anchors(*feature_sizes[level], config.steps[i],
                               shapes[i], image_size, config.clip)
          for i, level in enumerate(levels)}


def flatten(multilevel: Mapping[str, tf.Tensor], last_dim: int) -> tf.Tensor:
  """{level: [(B,) H, W, k * last_dim]} -> [(B,) N, last_dim], levels in
  ascending order (the order of the targets and the losses). N stays static
  when the levels' sizes are (NMS needs it)."""
  flat = []
  for level in sorted(multilevel, key=int):
    x = multilevel[level]
    size = x.shape[-3:]
    n = (size[0] * size[1] * size[2] // last_dim
         if size.is_fully_defined() else -1)
    flat.append(tf.reshape(x, [-1, n, last_dim] if x.shape.rank == 4 else
                           [n, last_dim]))
  return tf.concat(flat, axis=-2)
