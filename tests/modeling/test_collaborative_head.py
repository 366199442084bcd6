"""CoMask's collaborative head: Eqns. 8-9 by hand, dense offset targets on a
hand-built RoI, the per-cell mask-weighted IoU loss by hand, the random RoI
subset, and the head in the model: trained loss values by hand, the mask
threshold reaching the head, every real detection refined, the final masks
from the head re-run on the refined boxes, the classification-only box
head."""

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


def test_box_iou_value():
  boxes = tf.constant([[0., 0., 10., 10.]] * 3)
  gt = tf.constant([[0., 5., 10., 15.], [0., 0., 10., 10.],
                    [50., 50., 60., 60.]])
  # 50 / 150, identical, disjoint.
  np.testing.assert_allclose(ch.box_iou(boxes, gt).numpy(), [1 / 3, 1., 0.],
                             rtol=1e-6)


def _dense_case():
  """One image, a positive RoI and a padding RoI, cells with known boxes."""
  roi = np.array([[[0., 0., 70., 70.], [0., 0., 70., 70.]]], np.float32)
  gt = np.array([[[10., 10., 60., 60.], [0., 0., 1., 1.]]], np.float32)
  rng = np.random.default_rng(3)
  offsets = rng.uniform(0.05, 0.6, [1, 2, G, G, 4]).astype(np.float32)
  weights = rng.uniform(0.2, 0.9, [1, 2, G, G]).astype(np.float32)
  weights[0, 0, 0, 0] = 0.5  # exactly the threshold: weight 0
  valid = np.array([[1., 0.]], np.float32)
  return roi, gt, offsets, weights, valid


def _np_iou(a, b):
  inter = (np.maximum(np.minimum(a[..., 2], b[..., 2]) -
                      np.maximum(a[..., 0], b[..., 0]), 0) *
           np.maximum(np.minimum(a[..., 3], b[..., 3]) -
                      np.maximum(a[..., 1], b[..., 1]), 0))
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  return inter / (area(a) + area(b) - inter)


def _np_cell_boxes(roi, offsets):
  """[G, G, 4] boxes of one RoI's cells from (l, t, r, b) / RoI size."""
  h, w = roi[2] - roi[0], roi[3] - roi[1]
  cy = roi[0] + (np.arange(G) + 0.5) / G * h
  cx = roi[1] + (np.arange(G) + 0.5) / G * w
  cy, cx = np.meshgrid(cy, cx, indexing='ij')
  l, t, r, b = np.moveaxis(offsets, -1, 0)
  return np.stack([cy - t * h, cx - l * w, cy + b * h, cx + r * w], -1)


def test_dense_box_loss_by_hand_weights_each_cell_by_its_mask_confidence():
  roi, gt, offsets, weights, valid = _dense_case()
  per_cell = -np.log(_np_iou(_np_cell_boxes(roi[0, 0], offsets[0, 0]),
                             gt[0, 0]) + 1e-6)
  args = [tf.constant(a) for a in (roi, gt, offsets)]
  cell_weights = tf.Variable(weights)
  for threshold in (0.5, 0.3):
    w = weights[0, 0] * (weights[0, 0] > threshold)
    with tf.GradientTape() as tape:
      loss = ch.dense_box_loss(*args, cell_weights, tf.constant(valid),
                               threshold=threshold)
    # The padding RoI adds nothing, not even to the normaliser.
    np.testing.assert_allclose(loss.numpy(), (w * per_cell).sum() / 49,
                               rtol=1e-5)
    # The confidences learn from the boxes (the collaboration): d/dw_k =
    # per-cell loss / 49 for the counted cells, 0 for the others.
    grad = tape.gradient(loss, cell_weights).numpy()[0, 0]
    np.testing.assert_allclose(grad, (w > 0) * per_cell / 49, rtol=1e-4,
                               atol=1e-7)
  # w/o CL: the cells whose centre is inside the ground-truth box, weight 1.
  _, inside = ch.dense_offset_targets(tf.constant(roi), tf.constant(gt))
  inside = inside.numpy()[0, 0]
  assert inside.sum() == 25  # centres 15..55 in both directions
  loss = ch.dense_box_loss(*args, cell_weights, tf.constant(valid),
                           collaborative=False)
  np.testing.assert_allclose(loss.numpy(), (inside * per_cell).sum() / 49,
                             rtol=1e-5)
  # Exact cell boxes: no loss; no valid RoI: 0.
  targets, _ = ch.dense_offset_targets(tf.constant(roi), tf.constant(gt))
  exact = ch.dense_box_loss(args[0], args[1], targets, cell_weights,
                            tf.constant(valid))
  assert abs(exact.numpy()) < 1e-4
  assert ch.dense_box_loss(*args, cell_weights, tf.zeros([1, 2])).numpy() == 0


def test_sample_positives_draws_a_random_subset_of_the_positives():
  classes = tf.constant([[0, 2, 0, 3, 1, 0, 1, 2]])
  matches = {
      'rois': tf.reshape(tf.range(32, dtype=tf.float32), [1, 8, 4]),
      'matched_gt_boxes': tf.reshape(tf.range(32, dtype=tf.float32) + 100,
                                     [1, 8, 4]),
      'matched_gt_classes': classes,
      'matched_gt_indices': tf.constant([[-1, 0, -1, 2, 1, -1, 3, 4]])}
  positives = {1, 3, 4, 6, 7}
  seen = set()
  subsets = set()
  for _ in range(30):
    picked = ch.sample_positives(matches, 3)
    np.testing.assert_array_equal(picked['valid'].numpy(), [[1., 1., 1.]])
    rows = picked['rois'].numpy()[0, :, 0].astype(int) // 4
    assert set(rows) <= positives and len(set(rows)) == 3
    np.testing.assert_array_equal(picked['classes'].numpy()[0],
                                  classes.numpy()[0, rows])
    np.testing.assert_array_equal(
        picked['gt_boxes'].numpy()[0, :, 0], rows * 4 + 100)
    seen |= set(rows)
    subsets.add(frozenset(rows))
  assert seen == positives and len(subsets) > 1
  # A cap above the positives: all of them, then padding (class 0, index 0).
  picked = ch.sample_positives(matches, 7)
  np.testing.assert_array_equal(picked['valid'].numpy(), [[1.] * 5 + [0.] * 2])
  np.testing.assert_array_equal(picked['classes'].numpy()[0, 5:], [0, 0])
  assert set(picked['gt_indices'].numpy()[0]) <= {0, 1, 2, 3, 4}


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


THRESHOLD = 0.3  # not the default 0.5: the tests see it reach the head
IMAGE_SHAPE = tf.constant([[128., 160.]] * 2)
GT = dict(
    gt_boxes=tf.constant([[[10., 10., 60., 70.], [70., 80., 120., 150.]]] * 2),
    gt_classes=tf.constant([[1, 2]] * 2), gt_masks=tf.ones([2, 2, 56, 56]))


@pytest.fixture(scope='module')
def tiny_comask():
  """(config, model, images): the tiny CoMask with mask_threshold 0.3, its
  collaborative head's output convs drawn at random so that the cells'
  boxes and confidences differ from cell to cell (as after training)."""
  tf_keras.utils.set_random_seed(2)
  config = _tiny('model.two_stage.roi_box_refiner.collaborative.'
                 f'mask_threshold={THRESHOLD}')
  model = factory.build_two_stage_model(config.family_model)
  images = tf.random.normal([2, 128, 160, 3])
  model(images, image_shape=IMAGE_SHAPE, training=False)  # builds
  head = model.roi_box_refiner.head
  rng = np.random.default_rng(0)
  for layer, std in ((head.offsets, 0.05),
                     (head.mask_tower.get_layer('mask_logits'), 0.5)):
    kernel = layer.kernel
    kernel.assign(rng.normal(0, std, kernel.shape).astype(np.float32))
  return config, model, images


def _np_refined(roi, offsets, weights, threshold):
  """Eqns. 8-9 in numpy for one RoI, clipped to the 128x160 image."""
  w = weights * (weights > threshold)
  if w.sum() == 0:
    return roi
  boxes = _np_cell_boxes(roi, offsets)
  box = (w[..., None] * boxes).sum((0, 1)) / (w.sum() + ch.EPS)
  return np.clip(box, 0, [128, 160, 128, 160])


def test_tiny_comask_training_losses_by_hand(tiny_comask):
  config, model, images = tiny_comask
  outputs = model(images, image_shape=IMAGE_SHAPE, training=True, **GT)
  get = lambda key: outputs[f'collaborative/{key}'].numpy()
  rois, gt, offsets = get('rois'), get('gt_boxes'), get('offsets')
  weights, valid = get('cell_weights'), get('valid')
  assert offsets.shape == (2, 16, 7, 7, 4) and valid.sum() > 0
  # No mask head: the collaborative head makes the masks.
  assert model.mask_head is None and 'mask_outputs' not in outputs

  def dense(threshold):
    total = 0.0
    for b, k in zip(*np.nonzero(valid)):
      iou = _np_iou(_np_cell_boxes(rois[b, k], offsets[b, k]), gt[b, k])
      w = weights[b, k] * (weights[b, k] > threshold)
      total += (w * -np.log(iou + 1e-6)).sum()
    return total / (49 * valid.sum())

  logits, targets = get('coarse_mask_logits'), get('coarse_mask_targets')
  bce = (np.maximum(logits, 0) - logits * targets +
         np.log1p(np.exp(-np.abs(logits)))).mean(axis=(2, 3))
  expected = {'collab_dense': dense(THRESHOLD),
              'collab_coarse_mask': (bce * valid).sum() / valid.sum()}
  # The threshold matters on this case: 0.5 would give another value.
  assert abs(dense(0.5) - expected['collab_dense']) > 0.05 * expected[
      'collab_dense']
  terms = {t.name: t for t in families.get(config).build_losses().terms}
  assert 'collab_box' not in terms and 'mask' not in terms
  assert terms['collab_dense'].weight == 2.0
  assert terms['collab_coarse_mask'].weight == 1.0
  assert (terms['frcnn_cls'].weight, terms['frcnn_box'].weight) == (2.0, 0.0)
  for name, value in expected.items():
    np.testing.assert_allclose(terms[name].fn(outputs, {}).numpy(), value,
                               rtol=1e-4, err_msg=name)


def test_tiny_comask_inference_refines_detections_and_masks_from_the_head(
    tiny_comask):
  _, model, images = tiny_comask
  out = model(images, image_shape=IMAGE_SHAPE, training=False)
  n = out['num_detections'].numpy()
  assert n.min() > 0
  unrefined = out['unrefined_detection_boxes']
  classes = out['detection_classes']
  # The box head is classification-only: the detections before refinement
  # are proposals (zero deltas), and it has no box regressor weights.
  box_head = model.detection_head[0]
  assert not [v for v in box_head.weights if 'detection-boxes' in v.name]
  proposals = out['proposal_boxes'].numpy()
  for b in range(2):
    gap = np.abs(unrefined.numpy()[b, :n[b], None] -
                 proposals[b, None]).max(-1).min(-1)
    assert gap.max() < 1e-3, gap
  features = out['decoder_features']
  head = model.roi_box_refiner.head
  first = head(features, unrefined, classes)
  boxes = out['detection_boxes'].numpy()
  moved = 0
  for b in range(2):
    for k in range(n[b]):
      expected = _np_refined(unrefined.numpy()[b, k],
                             first['offsets'].numpy()[b, k],
                             first['cell_weights'].numpy()[b, k], THRESHOLD)
      np.testing.assert_allclose(boxes[b, k], expected, atol=2e-3)
      moved += np.abs(expected - unrefined.numpy()[b, k]).max() > 0.5
    np.testing.assert_array_equal(boxes[b, n[b]:],
                                  unrefined.numpy()[b, n[b]:])
  assert moved >= n.sum() // 2, (moved, n)
  # The final masks: the same head re-run on the refined boxes.
  second = head(features, out['detection_boxes'], classes)
  np.testing.assert_allclose(out['detection_masks'].numpy(),
                             tf.sigmoid(second['coarse_mask_logits']).numpy(),
                             atol=1e-5)
  assert np.abs(tf.sigmoid(first['coarse_mask_logits']).numpy() -
                out['detection_masks'].numpy()).max() > 1e-3
  assert 'roi_box_refiner' in model.checkpoint_items


def test_final_masks_off_uses_the_mask_head_on_the_refined_boxes():
  config = _tiny('model.two_stage.roi_box_refiner.collaborative.'
                 'final_masks=false', 'model.two_stage.max_level=4',
                 'model.two_stage.backbone.resnet.model_id=10')
  model = factory.build_two_stage_model(config.family_model)
  images = tf.random.normal([2, 128, 160, 3])
  outputs = model(images, image_shape=IMAGE_SHAPE, training=True, **GT)
  # The mask branch trains on the refined boxes (positives first).
  assert outputs['mask_outputs'].shape[1] == 32
  assert 'mask' in {t.name for t in families.get(config).build_losses().terms}
  inference = model(images, image_shape=IMAGE_SHAPE, training=False)
  assert model.mask_head is not None
  assert inference['detection_masks'].shape[1] == (
      inference['detection_boxes'].shape[1])


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
  the cells' boxes and the coarse mask learn. The dense term is a sum over
  the cells the mask counts, so it grows as the mask learns; what must fall
  is its mean per counted cell (M_s-weighted -log IoU)."""
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
    counted = tf.reduce_sum(ch.thresholded(
        outputs['collaborative/cell_weights'], 0.5))
    per_counted_cell = values[0] * 49 * 2 / tf.maximum(counted, 1e-6)
    return tf.stack([per_counted_cell, values[1]])

  history = np.array([step().numpy() for _ in range(40)])
  # Steps where no cell counts give 0 (the confidences start at 0.5 and the
  # dense term's gradient first pushes them down): averaged over the others.
  early = history[:10]
  first = np.array([col[col > 0].mean() for col in early.T])
  last = history[-10:].mean(0)
  for name, a, b in zip([t.name for t in terms], first, last):
    assert np.isfinite(b) and b < 0.8 * a, (name, a, b, history[:, 0])
