"""DATNet's binned distance-transform target (Levinshtein et al., Sec. 3.1).

Per instance i, D_i(x, y) is the Euclidean distance from a mask pixel to the
nearest pixel outside the mask (its boundary), normalised by that instance's
maximum; D = max_i D_i; the target bins D with `bin_edges` (the paper's
K = 4: 0 background, 1 (0, 0.2], 2 (0.2, 0.4], 3 > 0.4). The masks are the
augmented example's full-resolution masks rendered at the target stride
(`augment.masks_at_output_size`), and the distance transform runs there
(scipy's exact `distance_transform_edt`), so it costs h/s x w/s per instance.
"""

from typing import Sequence

import numpy as np
from scipy import ndimage
import tensorflow as tf

from tf_mtdet.data import augment
from tf_mtdet.data.targets import base


def binned_distance_transform(masks: np.ndarray,
                              bin_edges: Sequence[float]) -> np.ndarray:
  """[N, h, w] 0/1 masks -> [h, w] int32 bins of the normalised DT.

  Args:
    masks: Instance masks (any N, 0 gives all background).
    bin_edges: Increasing upper edges of bins 1..len(bin_edges); values
      above the last edge get bin len(bin_edges) + 1.

  Returns:
    0 where no instance covers the pixel, else the bin of D.
  """
  masks = np.asarray(masks) > 0.5
  dist = np.zeros(masks.shape[1:], np.float32)
  for mask in masks:
    if not mask.any():
      continue
    # Pad so a mask touching the image border still has a boundary there.
    edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    dist = np.maximum(dist, edt / edt.max())
  bins = np.digitize(dist, np.asarray(bin_edges, np.float32), right=True) + 1
  return np.where(dist > 0, bins, 0).astype(np.int32)


class DistanceTransformTargets(base.TargetGenerator):
  """`gt_distance_transform` [padded_h / stride, padded_w / stride] int32:
  the DT bin of each pixel; padding gets `ignore_label`. Training only."""

  needs = frozenset({augment.MASKS})

  def __init__(self, stride: int, bin_edges: Sequence[float] = (0.2, 0.4),
               ignore_label: int = 255):
    edges = [float(e) for e in bin_edges]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or not (
        0.0 < edges[0] and edges[-1] < 1.0):
      raise ValueError(f'bin_edges must increase within (0, 1), got {edges}')
    self._stride = int(stride)
    self._edges = edges
    self._ignore = int(ignore_label)

  @property
  def num_bins(self) -> int:
    """K: background plus one bin per interval."""
    return len(self._edges) + 2

  def train(self, example):
    padded = example['image'].shape[0:2]
    if not padded.is_fully_defined():
      raise ValueError('the distance-transform target needs a static padded '
                       'image size')
    masks = augment.masks_at_output_size(example, padded.as_list(),
                                         self._stride)
    height, width = masks.shape[1], masks.shape[2]
    bins = tf.numpy_function(
        lambda m: binned_distance_transform(m, self._edges), [masks],
        tf.int32, stateful=False)
    bins = tf.ensure_shape(bins, [height, width])
    # Pixels beyond the resized image are padding, not background.
    valid = tf.cast(tf.math.ceil(example['image_info'][1, :] / self._stride),
                    tf.int32)
    inside = (tf.range(height)[:, None] < valid[0]) & (
        tf.range(width)[None, :] < valid[1])
    return {'gt_distance_transform': tf.where(inside, bins, self._ignore)}
