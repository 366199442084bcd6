"""EJ-Head's Interleaving (SA-FPN/EJ-Head Sec. 3.2; HTC's interleaved execution).

In training the mask branch is fed the box head's refined boxes instead of the
sampled RoIs: the box deltas are decoded on the sampled RoIs (no gradient
flows through the decoding), the refined boxes are matched to the ground truth
again, and those with IoU >= threshold become the mask positives. Inference
already runs the mask branch on refined (detected) boxes, so training and
testing agree.
"""

from typing import Optional, Sequence

import tensorflow as tf
import tf_keras

from official.vision.ops import box_ops


def refine_boxes(box_outputs: tf.Tensor, class_outputs: tf.Tensor,
                 rois: tf.Tensor, image_shape: tf.Tensor,
                 regression_weights: Sequence[float],
                 class_agnostic: bool,
                 roi_classes: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Decodes the box head's deltas on its RoIs, without gradient.

  Class-specific heads use the deltas of each RoI's ground-truth class
  (`roi_classes`, as HTC's interleaved refinement: mmdetection's
  `refine_bboxes` with the sampled RoIs' labels); background RoIs, and every
  RoI without `roi_classes`, use their top predicted foreground class (as
  inference does, and HTC for background RoIs).

  Args:
    box_outputs: [B, N, 4] (class agnostic) or [B, N, num_classes * 4].
    class_outputs: [B, N, num_classes] logits (class 0 is background).
    rois: [B, N, 4] yxyx pixels the deltas are relative to.
    image_shape: [B, 2] height and width the boxes are clipped to.
    regression_weights: Model Garden's box coder weights for this stage.
    class_agnostic: Whether `box_outputs` has one box per RoI.
    roi_classes: [B, N] ground-truth class of each sampled RoI (0:
      background), or None.

  Returns:
    [B, N, 4] refined boxes.
  """
  box_outputs = tf.stop_gradient(tf.cast(box_outputs, tf.float32))
  if not class_agnostic:
    batch, num_rois = tf.shape(rois)[0], tf.shape(rois)[1]
    deltas = tf.reshape(box_outputs, [batch, num_rois, -1, 4])
    top_class = 1 + tf.argmax(
        tf.stop_gradient(class_outputs)[:, :, 1:], axis=-1, output_type=tf.int32)
    if roi_classes is not None:
      roi_classes = tf.cast(roi_classes, tf.int32)
      top_class = tf.where(roi_classes > 0, roi_classes, top_class)
    box_outputs = tf.gather(deltas, top_class, batch_dims=2)
  refined = box_ops.decode_boxes(box_outputs, tf.stop_gradient(rois),
                                 weights=list(regression_weights))
  return box_ops.clip_boxes(refined, image_shape[:, tf.newaxis, :])


def match_to_groundtruth(boxes: tf.Tensor, gt_boxes: tf.Tensor,
                         gt_classes: tf.Tensor, iou_threshold: float = 0.5):
  """Matches boxes to their highest-IoU ground truth box.

  Args:
    boxes: [B, N, 4] yxyx.
    gt_boxes: [B, M, 4] yxyx, padded with -1.
    gt_classes: [B, M], padded with -1.
    iou_threshold: Boxes below it become background (class 0).

  Returns:
    matched_gt_boxes [B, N, 4], matched_gt_classes [B, N] (0 below the
    threshold), matched_gt_indices [B, N] (-1 below the threshold).
  """
  iou = box_ops.bbox_overlap(boxes, gt_boxes)  # padding gets -1
  max_iou = tf.reduce_max(iou, axis=-1)
  index = tf.argmax(iou, axis=-1, output_type=tf.int32)
  positive = max_iou >= iou_threshold
  matched_boxes = tf.gather(gt_boxes, index, batch_dims=1)
  matched_classes = tf.where(
      positive, tf.gather(tf.cast(gt_classes, tf.int32), index, batch_dims=1),
      0)
  matched_indices = tf.where(positive, index, -1)
  return matched_boxes, matched_classes, matched_indices


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class InterleavedMaskAssigner(tf_keras.layers.Layer):
  """Mask RoI assigner of EJ-Head's Interleaving (no weights).

  Called by the two-stage model in training with the last box stage's
  sampled `rois` [B, N, 4], their ground-truth classes `roi_classes` [B, N],
  its `box_outputs` and `class_outputs`, the `image_shape` [B, 2], the ground truth `gt_boxes` [B, M, 4] / `gt_classes`
  [B, M], that stage's `regression_weights` and `class_agnostic`; returns
  `rois` (the refined boxes), `matched_gt_boxes`, `matched_gt_classes` and
  `matched_gt_indices` for the mask sampler.
  """

  def __init__(self, iou_threshold: float = 0.5, **kwargs):
    super().__init__(**kwargs)
    self.iou_threshold = float(iou_threshold)

  def call(self, rois, box_outputs, class_outputs, image_shape, gt_boxes,
           gt_classes, regression_weights, class_agnostic, roi_classes=None):
    refined = refine_boxes(box_outputs, class_outputs, rois, image_shape,
                           regression_weights, class_agnostic, roi_classes)
    boxes, classes, indices = match_to_groundtruth(
        refined, gt_boxes, gt_classes, self.iou_threshold)
    return {'rois': refined, 'matched_gt_boxes': boxes,
            'matched_gt_classes': classes, 'matched_gt_indices': indices}

  def get_config(self):
    return {**super().get_config(), 'iou_threshold': self.iou_threshold}
