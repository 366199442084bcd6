"""SSD prior matching (MultiBox): each prior takes the ground truth it
overlaps most if that IoU >= `match_threshold`, and every ground truth also
claims its best prior (so no object goes without a positive). No ignore
band: every other prior is a background candidate for hard negative mining.
"""

from typing import Callable, Mapping, Sequence

import tensorflow as tf

from official.vision.ops import box_ops

from tf_mtdet.data.targets import base
from tf_mtdet.modeling import ssd_anchors


def pairwise_iou(boxes: tf.Tensor, gt_boxes: tf.Tensor) -> tf.Tensor:
  """[N, 4] x [M, 4] yxyx -> [N, M] IoU (0 for empty unions)."""
  a = boxes[:, tf.newaxis, :]
  b = gt_boxes[tf.newaxis, :, :]
  inter_h = tf.maximum(
      tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
  inter_w = tf.maximum(
      tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
  inter = inter_h * inter_w
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  union = area(a) + area(b) - inter
  return tf.math.divide_no_nan(inter, union)


def match_priors(priors: tf.Tensor, gt_boxes: tf.Tensor, gt_classes: tf.Tensor,
                 match_threshold: float = 0.5
                 ) -> tuple[tf.Tensor, tf.Tensor]:
  """Assigns ground truth to priors.

  Args:
    priors: [N, 4] yxyx.
    gt_boxes: [M, 4] yxyx (M may be 0).
    gt_classes: [M] class ids >= 1.
    match_threshold: IoU for a positive.

  Returns:
    classes: [N] int32, the matched class (0 background).
    matched_boxes: [N, 4], the matched ground-truth box (zeros for
      background).
  """
  num_gt = tf.shape(gt_boxes)[0]
  # A zero-area dummy box makes the per-prior max defined when M == 0.
  padded = tf.concat([gt_boxes, tf.zeros([1, 4], gt_boxes.dtype)], axis=0)
  iou = pairwise_iou(priors, padded)
  best_iou = tf.reduce_max(iou, axis=1)
  best_gt = tf.argmax(iou, axis=1, output_type=tf.int32)
  # Every ground truth claims its best prior (later ones win a tie).
  best_prior = tf.argmax(iou[:, :num_gt], axis=0, output_type=tf.int32)
  best_gt = tf.tensor_scatter_nd_update(best_gt, best_prior[:, tf.newaxis],
                                        tf.range(num_gt, dtype=tf.int32))
  best_iou = tf.tensor_scatter_nd_update(best_iou, best_prior[:, tf.newaxis],
                                         tf.fill([num_gt], 2.0))
  positive = best_iou >= match_threshold
  padded_classes = tf.concat([tf.cast(gt_classes, tf.int32), [0]], axis=0)
  classes = tf.where(positive, tf.gather(padded_classes, best_gt), 0)
  matched = tf.where(positive[:, tf.newaxis], tf.gather(padded, best_gt), 0.0)
  return classes, matched


class SSDTargets(base.TargetGenerator):
  """`ssd_cls_targets` [N] int32 (0 background) and `ssd_box_targets` [N, 4]
  (dy, dx, dh, dw divided by the variances) over every prior, levels in
  ascending order. No evaluation labels (the model makes its priors)."""

  def __init__(self, anchor_config,
               feature_sizes: Callable[[Sequence[int]], Mapping[str, tuple]],
               match_threshold: float = 0.5,
               variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)):
    """Initializes the generator.

    Args:
      anchor_config: `SSDAnchors`.
      feature_sizes: [H, W] input -> {level: (H_l, W_l)} of the model.
      match_threshold: IoU for a positive.
      variances: Box coder variances.
    """
    self._anchor_config = anchor_config
    self._feature_sizes = feature_sizes
    self._threshold = float(match_threshold)
    self._weights = [1.0 / float(v) for v in variances]

  def priors(self, image_size: Sequence[int]) -> tf.Tensor:
    """[N, 4] yxyx priors of an input of `image_size`."""
    anchors = ssd_anchors.multilevel_anchors(
        self._anchor_config, self._feature_sizes(image_size), image_size)
    return ssd_anchors.flatten(anchors, 4)

  def train(self, example):
    height, width, _ = example['image'].get_shape().as_list()
    priors = self.priors([height, width])
    classes, matched = match_priors(priors, tf.cast(example['boxes'],
                                                    tf.float32),
                                    example['classes'], self._threshold)
    deltas = box_ops.encode_boxes(matched, priors, weights=self._weights)
    deltas = tf.where(classes[:, tf.newaxis] > 0, deltas, 0.0)
    return {'ssd_cls_targets': classes, 'ssd_box_targets': deltas}
