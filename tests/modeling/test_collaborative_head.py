"""CoMask's collaborative head: Eqns. 8-9 by hand, dense offset targets on a
hand-built RoI, the IoU losses, sampling, and the head in the model."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import conftest as root
from tf_mtdet.config import experiment
from tf_mtdet.families import base as families
from tf_mtdet.modeling import factory
from tf_mtdet.modeling.heads import collaborative_head as ch

G = ch.GRID


def _cells(boxes_by_cell):
  """[1, 1, 7, 7, 4] cell boxes, every cell `default` unless listed."""
  out = np.tile(np.array([0., 0., 10., 10.], np.float32), [1, 1, G, G, 1])
  for (i, j), box in boxes_by_cell.items():
    out[0, 0, i, j] = box
  return tf.constant(out)


def test_weighted_box_by_hand_excludes_cells_at_or_below_threshold():
  roi = tf.constant([[[0., 0., 70., 70.]]])
  boxes = _cells({(0, 0): [10., 20., 30., 40.], (3, 3): [20., 10., 60., 50.],
                  (6, 6): [100., 100., 200., 200.]})
  weights = np.zeros([1, 1, G, G], np.float32)
  weights[0, 0, 0, 0] = 0.9
  weights[0, 0, 3, 3] = 0.6
  weights[0, 0, 6, 6] = 0.5   # exactly the threshold: excluded
  weights[0, 0, 1, 1] = 0.49  # below: excluded
  box = ch.weighted_box(roi, boxes, tf.constant(weights))
  expected = (0.9 * np.array([10., 20., 30., 40.]) +
              0.6 * np.array([20., 10., 60., 50.])) / (1.5 + ch.EPS)
  np.testing.assert_allclose(box.numpy()[0, 0], expected, rtol=1e-6)


def test_no_cell_above_threshold_keeps_the_roi_and_has_finite_gradients():
  roi = tf.constant([[[5., 6., 50., 60.]]])
  boxes = tf.Variable(_cells({}))
  weights = tf.Variable(tf.fill([1, 1, G, G], 0.5))
  with tf.GradientTape() as tape:
    box = ch.weighted_box(roi, boxes, weights)
    loss = tf.reduce_sum(box)
  np.testing.assert_array_equal(box.numpy(), roi.numpy())
  for grad in tape.gradient(loss, [boxes, weights]):
    assert grad is None or np.all(np.isfinite(grad.numpy()))


def test_without_collaboration_averages_cells_inside_the_coarse_box():
  # RoI 0..70: cell centres at 5, 15, ..., 65. All cells predict box A except
  # one far-off cell; the coarse box (their mean) decides which cells count.
  roi = tf.constant([[[0., 0., 70., 70.]]])
  a = np.array([20., 20., 50., 50.], np.float32)
  far = np.array([0., 0., 70., 70.], np.float32)
  cells = np.tile(a, [1, 1, G, G, 1])
  cells[0, 0, 0, 0] = far
  coarse = (48 * a + far) / 49
  centres = (np.arange(G) + 0.5) * 10
  inside = ((centres > coarse[0]) & (centres < coarse[2]))  # rows (y)
  inside_x = ((centres > coarse[1]) & (centres < coarse[3]))
  mask = inside[:, None] & inside_x[None, :]
  assert not mask[0, 0] and mask.sum() == 9  # centres 25, 35, 45
  weights = tf.fill([1, 1, G, G], 0.99)  # ignored without collaboration
  box = ch.weighted_box(roi, tf.constant(cells), weights, collaborative=False)
  expected = cells[0, 0][mask].mean(axis=0)
  np.testing.assert_allclose(box.numpy()[0, 0], expected, rtol=1e-5)


def test_dense_offset_targets_on_a_hand_built_roi():
  # RoI x 0..70, y 0..140: cell centres x = 5, 15, ..., y = 10, 30, ...
  roi = tf.constant([[[0., 0., 140., 70.]]])
  gt = tf.constant([[[25., 12., 95., 48.]]])
  targets, inside = ch.dense_offset_targets(roi, gt)
  targets, inside = targets.numpy()[0, 0], inside.numpy()[0, 0]
  # Cell (row 1, col 2): centre y = 30, x = 25.
  np.testing.assert_allclose(
      targets[1, 2], [(25 - 12) / 70, (30 - 25) / 140, (48 - 25) / 70,
                      (95 - 30) / 140], rtol=1e-6)
  rows = (np.arange(G) + 0.5) * 20
  cols = (np.arange(G) + 0.5) * 10
  expected = ((rows > 25) & (rows < 95))[:, None] & (
      (cols > 12) & (cols < 48))[None, :]
  np.testing.assert_array_equal(inside, expected.astype(np.float32))
  assert inside.sum() == 4 * 4  # rows 30..90, cols 15..45
  # A cell centre outside the GT box has a negative target.
  assert targets[0, 0, 0] < 0


def test_cell_boxes_inverts_the_targets():
  roi = tf.constant([[[0., 0., 140., 70.]]])
  gt = tf.constant([[[25., 12., 95., 48.]]])
  targets, inside = ch.dense_offset_targets(roi, gt)
  boxes = ch.cell_boxes(roi, targets).numpy()[0, 0]
  np.testing.assert_allclose(boxes[inside.numpy()[0, 0] > 0],
                             np.tile([25., 12., 95., 48.], [16, 1]),
                             atol=1e-4)


def test_iou_loss_value():
  boxes = tf.constant([[0., 0., 10., 10.], [0., 0., 10., 10.],
                       [0., 0., 10., 10.]])
  gt = tf.constant([[0., 5., 10., 15.], [0., 0., 10., 10.],
                    [50., 50., 60., 60.]])
  # IoU 50 / 150 = 1/3 and 1; the third pair has weight 0.
  loss = ch.iou_loss(boxes, gt, tf.constant([1., 1., 0.]))
  np.testing.assert_allclose(
      loss.numpy(), (-np.log(1 / 3 + 1e-6) - np.log(1 + 1e-6)) / 2, rtol=1e-6)
  np.testing.assert_allclose(loss.numpy(), np.log(3.0) / 2, rtol=1e-5)
  # Disjoint boxes: the added 1e-6 keeps it finite.
  loss = ch.iou_loss(boxes[2:], gt[2:], tf.constant([1.]))
  np.testing.assert_allclose(loss.numpy(), -np.log(1e-6), rtol=1e-6)
  assert ch.iou_loss(boxes, gt, tf.zeros([3])).numpy() == 0.0


def test_dense_offset_loss_is_the_offsets_iou():
  roi = tf.constant([[[0., 0., 140., 70.]]])
  gt = tf.constant([[[25., 12., 95., 48.]]])
  targets, inside = ch.dense_offset_targets(roi, gt)
  perfect = tf.maximum(targets, 0.0)
  valid = tf.constant([[1.]])
  assert abs(ch.dense_offset_loss(roi, gt, perfect, valid).numpy()) < 2e-5
  # Halving l and r halves the width: IoU 1/2 in every inside cell.
  half = perfect * tf.constant([0.5, 1.0, 0.5, 1.0])
  np.testing.assert_allclose(
      ch.dense_offset_loss(roi, gt, half, valid).numpy(), np.log(2.0),
      rtol=1e-5)
  # The same via the boxes' IoU.
  predicted = ch.cell_boxes(roi, half)
  iou = ch.box_iou(predicted, tf.broadcast_to(gt[:, :, None, None],
                                              predicted.shape))
  np.testing.assert_allclose(iou.numpy()[inside.numpy() > 0], 0.5, rtol=1e-5)
  assert ch.dense_offset_loss(roi, gt, half, tf.constant([[0.]])).numpy() == 0


def test_sample_positives_caps_and_puts_positives_first():
  matches = {
      'rois': tf.reshape(tf.range(24, dtype=tf.float32), [1, 6, 4]),
      'matched_gt_boxes': tf.reshape(tf.range(24, dtype=tf.float32) + 100,
                                     [1, 6, 4]),
      'matched_gt_classes': tf.constant([[0, 2, 0, 3, 1, 0]]),
      'matched_gt_indices': tf.constant([[-1, 0, -1, 2, 1, -1]])}
  picked = ch.sample_positives(matches, 2)
  assert picked['rois'].shape == (1, 2, 4)
  np.testing.assert_array_equal(picked['valid'].numpy(), [[1., 1.]])
  picked = ch.sample_positives(matches, 4)
  np.testing.assert_array_equal(picked['valid'].numpy(), [[1., 1., 1., 0.]])
  np.testing.assert_array_equal(picked['classes'].numpy(), [[2, 3, 1, 0]])
  np.testing.assert_array_equal(picked['gt_indices'].numpy(), [[0, 2, 1, 0]])
  np.testing.assert_array_equal(picked['rois'].numpy()[0, :3, 0], [4, 12, 16])


def test_jitter_stays_within_its_amplitude():
  boxes = tf.tile(tf.constant([[[40., 40., 60., 80.]]]), [1, 200, 1])
  jittered = ch.jitter_boxes(boxes, 0.15, tf.constant([[200., 200.]]))
  j = jittered.numpy()[0]
  h, w = j[:, 2] - j[:, 0], j[:, 3] - j[:, 1]
  assert np.all((h >= 20 * 0.85 - 1e-4) & (h <= 20 * 1.15 + 1e-4))
  assert np.all((w >= 40 * 0.85 - 1e-4) & (w <= 40 * 1.15 + 1e-4))
  cy = (j[:, 0] + j[:, 2]) / 2
  assert np.all(np.abs(cy - 50) <= 0.15 * 20 + 1e-4)
  assert np.std(cy) > 0  # random
  assert ch.jitter_boxes(boxes, 0.0, None) is boxes


def test_head_shapes_and_config_round_trip():
  head = ch.CollaborativeHead(num_classes=5, num_filters=16, num_convs=2)
  features = {str(l): tf.random.normal([2, 64 // 2**l, 64 // 2**l, 16])
              for l in range(2, 6)}
  rois = tf.constant([[[0., 0., 32., 32.], [10., 5., 40., 60.], [0., 0., 0., 0.]]] * 2)
  out = head(features, rois, tf.constant([[1, 4, 0]] * 2))
  assert out['offsets'].shape == (2, 3, 7, 7, 4)
  assert out['coarse_mask_logits'].shape == (2, 3, 28, 28)
  assert out['cell_weights'].shape == (2, 3, 7, 7)
  assert out['refined_boxes'].shape == (2, 3, 4)
  assert np.all(np.isfinite(out['refined_boxes'].numpy()))
  # M_s is the 4x4 average of the class's coarse mask probabilities.
  probs = tf.sigmoid(out['coarse_mask_logits']).numpy()
  np.testing.assert_allclose(
      out['cell_weights'].numpy(),
      probs.reshape(2, 3, 7, 4, 7, 4).mean(axis=(3, 5)), rtol=1e-5)
  clone = ch.CollaborativeHead.from_config(head.get_config())
  assert clone.get_config() == head.get_config()
  with pytest.raises(ValueError, match='crop_size must be 14'):
    ch.CollaborativeHead(num_classes=5, crop_size=7)


def _tiny(*overrides):
  config = experiment.load_config(
      os.path.join(root.REPO_ROOT, 'configs', 'comask',
                   'comask_tiny_shapes.yaml'), list(overrides))
  return config


def test_tiny_comask_trains_refines_and_owns_its_losses():
  config = _tiny()
  family = families.get(config)
  model = factory.build_two_stage_model(config.family_model)
  images = tf.random.normal([2, 128, 160, 3])
  shape = tf.constant([[128., 160.]] * 2)
  gt_boxes = tf.constant([[[10., 10., 60., 70.], [70., 80., 120., 150.]]] * 2)
  gt_classes = tf.constant([[1, 2]] * 2)
  gt_masks = tf.ones([2, 2, 56, 56])
  outputs = model(images, image_shape=shape, gt_boxes=gt_boxes,
                  gt_classes=gt_classes, gt_masks=gt_masks, training=True)
  assert outputs['collaborative/offsets'].shape == (2, 16, 7, 7, 4)
  assert outputs['collaborative/coarse_mask_targets'].shape == (2, 16, 28, 28)
  losses = family.build_losses()
  assert {'collab_dense_loss', 'collab_box_loss',
          'collab_coarse_mask_loss'} <= set(losses.component_names)
  # The mask branch trains on the refined boxes (positives first).
  assert outputs['mask_outputs'].shape[1] == 32
  inference = model(images, image_shape=shape, training=False)
  boxes = inference['detection_boxes'].numpy()
  unrefined = inference['unrefined_detection_boxes'].numpy()
  n = inference['num_detections'].numpy()
  for b in range(2):
    np.testing.assert_array_equal(boxes[b, n[b]:], unrefined[b, n[b]:])
    assert np.all(boxes[b] >= 0) and np.all(boxes[b, :, 2] <= 128)
  assert inference['detection_masks'].shape[1] == boxes.shape[1]
  assert 'roi_box_refiner' in model.checkpoint_items


def test_cross_config_sa_fpn_with_the_collaborative_head_trains():
  config = experiment.load_config(os.path.join(
      root.REPO_ROOT, 'configs', 'comask',
      'sa_fpn_collaborative_tiny_shapes.yaml'))
  family = families.get(config)
  model = factory.build_two_stage_model(config.family_model)
  losses = family.build_losses()
  images = tf.random.normal([1, 128, 160, 3])
  shape = tf.constant([[128., 160.]])
  labels = dict(
      gt_boxes=tf.constant([[[10., 10., 60., 70.], [70., 80., 120., 150.]]]),
      gt_classes=tf.constant([[1, 3]]), gt_masks=tf.ones([1, 2, 56, 56]))
  model(images, image_shape=shape, training=False)  # builds the weights
  values = []
  for _ in range(2):
    with tf.GradientTape() as tape:
      outputs = model(images, image_shape=shape, training=True, **labels)
      # RPN targets are not needed for the head's own terms.
      total = tf.add_n([term.weight * term.fn(outputs, {})
                        for term in losses.terms
                        if term.name.startswith('collab')])
    grads = tape.gradient(total, model.roi_box_refiner.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy()))
               for g in grads)
    for var, grad in zip(model.roi_box_refiner.trainable_variables, grads):
      var.assign_sub(0.01 * grad)
    values.append(float(total))
  assert type(model.decoder).__name__ == 'ScaleAwareFPN'
  assert all(np.isfinite(values))
  inference = model(images, image_shape=shape, training=False)
  assert 'unrefined_detection_boxes' in inference


def test_refiner_rejects_settings_it_cannot_honour():
  for override, message in (
      ('model.two_stage.ej_head.interleaving=true', 'interleaving off'),
      ('model.two_stage.include_mask=false', 'needs include_mask'),
      ('model.two_stage.outer_boxes_scale=1.25', 'outer_boxes_scale 1.0')):
    model_cfg = _tiny(override).family_model
    with pytest.raises(ValueError, match=message):
      ch.build_collaborative_refiner(
          model_cfg.roi_box_refiner.collaborative, model_cfg)


def test_each_of_the_heads_terms_falls_on_fixed_rois():
  """The head alone on fixed positives (jittered each step, as in training):
  dense offsets, the weighted box and the coarse mask all learn. In the full
  model the box term need not fall over a short run: the box stage's
  positives change as the RPN learns."""
  tf_keras.utils.set_random_seed(1)
  head = ch.CollaborativeHead(num_classes=3, num_filters=32, num_convs=2,
                              name='collaborative_head')
  refiner = ch.CollaborativeRefiner(head, max_rois_per_image=4)
  terms = ch.collaborative_terms(
      experiment.load_config(os.path.join(
          root.REPO_ROOT, 'configs', 'comask', 'comask_tiny_shapes.yaml'))
      .family_model.roi_box_refiner.collaborative, None)
  # Stride-4 and stride-8 features that show the objects (a disk in each
  # ground-truth box), as a trained backbone's would.
  gt = np.array([[[8., 12., 56., 60.], [40., 64., 104., 120.]]], np.float32)
  yy, xx = np.mgrid[:128, :128] + 0.5
  canvas = np.zeros([128, 128], np.float32)
  for y0, x0, y1, x1 in gt[0]:
    cy, cx, r = (y0 + y1) / 2, (x0 + x1) / 2, min(y1 - y0, x1 - x0) / 2
    canvas[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = 1.0
  noise = np.random.default_rng(0).normal(0, 0.1, [1, 128, 128, 8])
  image = np.concatenate([canvas[None, ..., None].repeat(8, -1), noise], -1)
  features = {str(l): tf.nn.avg_pool2d(tf.constant(image, tf.float32),
                                       2**l, 2**l, 'VALID') for l in (2, 3)}
  # Masks as the parser makes them: crops of each instance's own box.
  masks = tf.image.crop_and_resize(
      canvas[None, ..., None], gt[0] / 128.0, [0, 0], [28, 28])[..., 0]
  matches = {
      'rois': tf.constant(gt + np.float32([[[2, -3, 4, 5], [-4, 2, -3, 3]]])),
      'matched_gt_boxes': tf.constant(gt),
      'matched_gt_classes': tf.constant([[1, 2]]),
      'matched_gt_indices': tf.constant([[0, 1]])}
  shape = tf.constant([[128., 128.]])
  optimizer = tf_keras.optimizers.Adam(3e-3)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      outputs, _ = refiner(features, {}, matches, shape,
                           gt_masks=masks[tf.newaxis], training=True)
      values = [term.fn(outputs, {}) for term in terms]
      total = tf.add_n([t.weight * v for t, v in zip(terms, values)])
    variables = refiner.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
    return tf.stack(values)

  history = np.array([step().numpy() for _ in range(40)])
  first, last = history[:5].mean(0), history[-5:].mean(0)
  for name, a, b in zip([t.name for t in terms], first, last):
    assert np.isfinite(b) and b < 0.8 * a, (name, a, b, history[:, 0])
