"""Interleaving: mask targets from refined boxes, IoU >= 0.5, no gradient."""

import numpy as np
import tensorflow as tf

from official.vision.ops import box_ops
from tf_mtdet.modeling.heads import interleaving

WEIGHTS = [10.0, 10.0, 5.0, 5.0]


def _case():
  """One image, one ground truth box [10, 10, 50, 50] of class 2, three RoIs.

  RoI 0 is off the object but its deltas move it onto it; RoI 1 overlaps the
  object (IoU 0.64) but its deltas move it away; RoI 2 stays far away.
  """
  gt_boxes = tf.constant([[[10., 10., 50., 50.], [-1., -1., -1., -1.]]])
  gt_classes = tf.constant([[2, -1]])
  rois = tf.constant([[[20., 20., 60., 60.], [14., 14., 54., 54.],
                       [70., 70., 90., 90.]]])
  targets = tf.constant([[[10., 10., 50., 50.], [40., 40., 80., 80.],
                          [70., 70., 90., 90.]]])
  deltas = box_ops.encode_boxes(targets, rois, weights=WEIGHTS)  # [1, 3, 4]
  num_classes = 3
  # Class-specific outputs: the right deltas under class 2, noise elsewhere.
  box_outputs = tf.concat([deltas + 5.0, deltas - 5.0, deltas], axis=-1)
  class_outputs = tf.constant([[[0., 0., 3.], [0., 0., 3.], [0., 0., 3.]]])
  return gt_boxes, gt_classes, rois, box_outputs, class_outputs, num_classes


def test_mask_targets_come_from_refined_boxes_above_iou_half():
  gt_boxes, gt_classes, rois, box_outputs, class_outputs, _ = _case()
  before = box_ops.bbox_overlap(rois, gt_boxes).numpy()[0, :, 0]
  assert before[1] >= 0.5 > before[0]  # the RoIs' own IoUs say the opposite
  refined = interleaving.refine_boxes(
      box_outputs, class_outputs, rois, tf.constant([[100., 100.]]), WEIGHTS,
      class_agnostic=False)
  np.testing.assert_allclose(refined.numpy()[0],
                             [[10, 10, 50, 50], [40, 40, 80, 80],
                              [70, 70, 90, 90]], atol=1e-3)
  boxes, classes, indices = interleaving.match_to_groundtruth(
      refined, gt_boxes, gt_classes, 0.5)
  assert classes.numpy().tolist() == [[2, 0, 0]]
  assert indices.numpy().tolist() == [[0, -1, -1]]
  np.testing.assert_allclose(boxes.numpy()[0, 0], [10, 10, 50, 50])


def test_threshold_is_inclusive_and_agnostic_deltas_work():
  gt_boxes = tf.constant([[[0., 0., 10., 10.]]])
  # [0, 0, 10, 5] has IoU exactly 0.5 with the ground truth.
  rois = tf.constant([[[0., 0., 10., 5.]]])
  refined = interleaving.refine_boxes(
      tf.zeros([1, 1, 4]), tf.zeros([1, 1, 2]), rois,
      tf.constant([[20., 20.]]), WEIGHTS, class_agnostic=True)
  _, classes, _ = interleaving.match_to_groundtruth(
      refined, gt_boxes, tf.constant([[1]]), 0.5)
  assert classes.numpy().tolist() == [[1]]


def test_no_gradient_flows_into_the_box_deltas():
  gt_boxes, gt_classes, rois, box_outputs, class_outputs, _ = _case()
  box_outputs = tf.Variable(box_outputs)
  with tf.GradientTape() as tape:
    refined = interleaving.refine_boxes(
        box_outputs, class_outputs, rois, tf.constant([[100., 100.]]),
        WEIGHTS, class_agnostic=False)
    loss = tf.reduce_sum(refined)
  assert tape.gradient(loss, box_outputs) is None


def test_class_specific_deltas_of_the_ground_truth_class_background_predicted():
  """HTC: a sampled RoI is refined with its ground-truth class's deltas even
  when the classifier prefers another class; a background RoI (class 0)
  with its top predicted foreground class's."""
  gt_boxes, _, rois, box_outputs, _, _ = _case()
  # The classifier prefers class 1 (the -5 noise) for RoIs 0 and 1 and
  # class 2 (the right deltas) for RoI 2.
  class_outputs = tf.constant([[[0., 3., 0.], [0., 3., 0.], [0., 0., 3.]]])
  roi_classes = tf.constant([[2, 2, 0]])
  refined = interleaving.refine_boxes(
      box_outputs, class_outputs, rois, tf.constant([[100., 100.]]), WEIGHTS,
      class_agnostic=False, roi_classes=roi_classes)
  np.testing.assert_allclose(refined.numpy()[0],
                             [[10, 10, 50, 50], [40, 40, 80, 80],
                              [70, 70, 90, 90]], atol=1e-3)
  # The same RoIs with the predicted class only: class 1's noisy deltas.
  predicted = interleaving.refine_boxes(
      box_outputs, class_outputs, rois, tf.constant([[100., 100.]]), WEIGHTS,
      class_agnostic=False)
  assert np.abs(predicted.numpy()[0, :2] - refined.numpy()[0, :2]).max() > 1
  assigner = interleaving.InterleavedMaskAssigner(0.5)
  out = assigner(rois=rois, roi_classes=roi_classes, box_outputs=box_outputs,
                 class_outputs=class_outputs,
                 image_shape=tf.constant([[100., 100.]]), gt_boxes=gt_boxes,
                 gt_classes=tf.constant([[2, -1]]), regression_weights=WEIGHTS,
                 class_agnostic=False)
  assert out['matched_gt_classes'].numpy().tolist() == [[2, 0, 0]]
