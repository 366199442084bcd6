"""CoMask's collaborative head (Chen et al., Sec. 3.2): dense box offsets
weighted by a coarse mask refine the box, and the same head's mask branch,
re-run on the refined box, gives the final mask.

Per RoI: RoIAlign 14x14 -> conv3x3 stride 2 (7x7) -> `num_convs` conv3x3 (GN,
ReLU), then

  (a) dense offsets: conv3x3 -> 4 channels (l, t, r, b) per 7x7 cell,
      softplus (the public code's ReLU can die: zero-area boxes, IoU 0), the
      distances from the cell centre to the box edges divided by the
      RoI's width (l, r) or height (t, b);
  (b) coarse mask: 2 x [deconv2x2 stride 2, ReLU] (7 -> 14 -> 28) -> conv1x1
      to per-class logits.

The coarse mask of the RoI's class, as probabilities average-pooled to 7x7,
weights the cells' boxes (Eqns. 8-9):

  M_s = avgpool4x4(sigmoid(coarse logits)),  S = {cells with M_s > 0.5},
  box = sum_{k in S} M_s(k) * box_k / (sum_{k in S} M_s(k) + 1e-5).

A RoI with no cell above 0.5 keeps its own box (the proposal at training, the
detection at inference): the weighted sum would be 0 / eps (a box at the
origin), and the RoI is the best estimate the head has. 'w/o CL' (Table 3,
`collaborative=False`): no mask weighting; the cells' boxes are averaged with
equal weight over the cells whose centres lie inside the coarse box (the
plain mean of all 49 cells' boxes); all 49 if none does.

Inference (`CollaborativeRefiner`, public `SID.simple_test`): the head runs on
the detections, their boxes become the refined ones, and the head runs again
on the refined boxes: its coarse mask is the final mask (`final_masks`; off,
the model's own mask head pools the refined boxes instead). Training: a
random subset of the sampled positives, at most `max_rois_per_image` per
image, jittered by up to +-`jitter` of their size, is what the head sees; it
owns its losses (`collaborative_terms`, public `SID.forward_train`): -log IoU
of every cell's box against the ground-truth box, each cell weighted by its
thresholded M_s (0 at or below the threshold), and the coarse mask's BCE;
no loss on the weighted box.
"""

from typing import Any, Mapping, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.modeling.layers import roi_aligner
from official.vision.ops import box_ops
from official.vision.ops import spatial_transform_ops

from tf_mtdet.modeling import registry
from tf_mtdet.modeling.necks import msfem

GRID = 7        # cells per side of the dense prediction
MASK_SIZE = 28  # coarse mask side (GRID * 4)
EPS = 1e-5      # Eqn. 8-9 denominator, as the public code


def cell_centres(rois: tf.Tensor, grid: int = GRID) -> tf.Tensor:
  """Centres (y, x) of a grid x grid partition of each RoI.

  Args:
    rois: [..., 4] boxes (ymin, xmin, ymax, xmax).
    grid: Cells per side.

  Returns:
    [..., grid, grid, 2] (y, x) in the boxes' coordinates.
  """
  steps = (tf.range(grid, dtype=rois.dtype) + 0.5) / grid
  y1, x1, y2, x2 = tf.unstack(rois[..., tf.newaxis], axis=-2)
  ys = y1 + steps * (y2 - y1)  # [..., grid]
  xs = x1 + steps * (x2 - x1)
  shape = tf.concat([tf.shape(ys), [grid]], axis=0)
  return tf.stack([tf.broadcast_to(ys[..., :, tf.newaxis], shape),
                   tf.broadcast_to(xs[..., tf.newaxis, :], shape)], axis=-1)


def _roi_size(rois: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(height, width) [..., 1, 1] of each RoI, at least 1 pixel."""
  h = tf.maximum(rois[..., 2] - rois[..., 0], 1.0)
  w = tf.maximum(rois[..., 3] - rois[..., 1], 1.0)
  return h[..., tf.newaxis, tf.newaxis], w[..., tf.newaxis, tf.newaxis]


def cell_boxes(rois: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
  """Each cell's box from its normalised (l, t, r, b) offsets.

  Args:
    rois: [B, K, 4] (ymin, xmin, ymax, xmax).
    offsets: [B, K, G, G, 4] (l, t, r, b) divided by the RoI's width/height.

  Returns:
    [B, K, G, G, 4] boxes (ymin, xmin, ymax, xmax).
  """
  grid = offsets.shape[2]
  centres = cell_centres(rois, grid)
  cy, cx = centres[..., 0], centres[..., 1]
  h, w = _roi_size(rois)
  l, t, r, b = tf.unstack(offsets, axis=-1)
  return tf.stack([cy - t * h, cx - l * w, cy + b * h, cx + r * w], axis=-1)


def dense_offset_targets(rois: tf.Tensor, gt_boxes: tf.Tensor,
                         grid: int = GRID) -> tuple[tf.Tensor, tf.Tensor]:
  """Dense regression targets of each RoI cell (FCOS-style, per RoI).

  Args:
    rois: [B, K, 4] the RoIs the head sees.
    gt_boxes: [B, K, 4] their matched ground-truth boxes.
    grid: Cells per side.

  Returns:
    targets: [B, K, G, G, 4] (l*, t*, r*, b*): distances from each cell
      centre to the ground-truth edges, divided by the RoI's width (l, r)
      or height (t, b).
    inside: [B, K, G, G] float, 1 where the cell centre lies strictly inside
      the ground-truth box (the cells 'w/o CL' trains).
  """
  centres = cell_centres(rois, grid)
  cy, cx = centres[..., 0], centres[..., 1]
  h, w = _roi_size(rois)
  g = gt_boxes[..., tf.newaxis, tf.newaxis, :]
  targets = tf.stack([(cx - g[..., 1]) / w, (cy - g[..., 0]) / h,
                      (g[..., 3] - cx) / w, (g[..., 2] - cy) / h], axis=-1)
  inside = tf.cast(tf.reduce_all(targets > 0.0, axis=-1), rois.dtype)
  return targets, inside


def thresholded(weights: tf.Tensor, threshold: float) -> tf.Tensor:
  """M_s where M_s > threshold, else 0 (the cells Eqns. 8-9 count)."""
  return weights * tf.cast(weights > threshold, weights.dtype)


def weighted_box(rois: tf.Tensor, boxes: tf.Tensor, weights: tf.Tensor,
                 threshold: float = 0.5, collaborative: bool = True
                 ) -> tf.Tensor:
  """The RoI's box from its cells' boxes (Eqns. 8-9).

  Args:
    rois: [B, K, 4] the RoIs (the fallback box).
    boxes: [B, K, G, G, 4] the cells' boxes.
    weights: [B, K, G, G] foreground confidence M_s of each cell.
    threshold: Cells with M_s > threshold count.
    collaborative: False: 'w/o CL', equal weights over the cells whose
      centre lies inside the mean of all cells' boxes (the coarse box).

  Returns:
    [B, K, 4]; a RoI with no counted cell keeps its own box.
  """
  if collaborative:
    weights = thresholded(weights, threshold)
  else:
    coarse = tf.reduce_mean(boxes, axis=[2, 3])
    centres = cell_centres(rois, boxes.shape[2])
    c = coarse[..., tf.newaxis, tf.newaxis, :]
    weights = tf.cast(
        (centres[..., 0] > c[..., 0]) & (centres[..., 0] < c[..., 2]) &
        (centres[..., 1] > c[..., 1]) & (centres[..., 1] < c[..., 3]),
        boxes.dtype)
    none = tf.reduce_sum(weights, axis=[2, 3], keepdims=True) == 0.0
    weights = tf.where(none, tf.ones_like(weights), weights)
  total = tf.reduce_sum(weights, axis=[2, 3])
  box = tf.reduce_sum(weights[..., tf.newaxis] * boxes, axis=[2, 3]) / (
      total[..., tf.newaxis] + EPS)
  return tf.where((total > 0.0)[..., tf.newaxis], box, rois)


def box_iou(boxes: tf.Tensor, gt_boxes: tf.Tensor) -> tf.Tensor:
  """Elementwise IoU of [..., 4] (ymin, xmin, ymax, xmax) pairs."""
  y1 = tf.maximum(boxes[..., 0], gt_boxes[..., 0])
  x1 = tf.maximum(boxes[..., 1], gt_boxes[..., 1])
  y2 = tf.minimum(boxes[..., 2], gt_boxes[..., 2])
  x2 = tf.minimum(boxes[..., 3], gt_boxes[..., 3])
  inter = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
  area = lambda b: (tf.maximum(b[..., 2] - b[..., 0], 0.0) *
                    tf.maximum(b[..., 3] - b[..., 1], 0.0))
  union = area(boxes) + area(gt_boxes) - inter
  return inter / tf.maximum(union, 1e-8)


def jitter_boxes(boxes: tf.Tensor, amplitude: float,
                 image_shape: tf.Tensor) -> tf.Tensor:
  """Shifts the centre by up to +-amplitude of the size and scales each side
  by 1 +- amplitude (uniform), clipped to the image.

  Args:
    boxes: [B, K, 4].
    amplitude: Relative jitter (the public code's 0.15).
    image_shape: [B, 2] (height, width).
  """
  if not amplitude:
    return boxes
  h = boxes[..., 2] - boxes[..., 0]
  w = boxes[..., 3] - boxes[..., 1]
  noise = tf.random.uniform(tf.concat([tf.shape(boxes)[:-1], [4]], 0),
                            -amplitude, amplitude, dtype=boxes.dtype)
  cy = (boxes[..., 0] + boxes[..., 2]) / 2 + noise[..., 0] * h
  cx = (boxes[..., 1] + boxes[..., 3]) / 2 + noise[..., 1] * w
  h, w = h * (1 + noise[..., 2]), w * (1 + noise[..., 3])
  jittered = tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1)
  return box_ops.clip_boxes(jittered, image_shape[:, tf.newaxis, :])


def sample_positives(matches: Mapping[str, tf.Tensor], k: int
                     ) -> dict[str, tf.Tensor]:
  """A random subset of at most `k` positive RoIs per image of the box
  stage's sampled RoIs (the public code's randperm).

  Args:
    matches: `rois` [B, N, 4], `matched_gt_boxes` [B, N, 4],
      `matched_gt_classes` [B, N] (0: background), `matched_gt_indices`
      [B, N].
    k: The cap per image (min(k, N) are returned).

  Returns:
    `rois`, `gt_boxes` [B, k, 4], `classes`, `gt_indices` [B, k] and `valid`
    [B, k] float (1 for a positive; padding entries are negatives).
  """
  classes = matches['matched_gt_classes']
  k = min(k, int(classes.shape[1]))
  positive = tf.cast(classes > 0, tf.int32)
  # Positives score in [1, 2), negatives in [0, 1): positives first, in a
  # random order, so the cap keeps a random subset.
  score = tf.cast(positive, tf.float32) + tf.random.uniform(tf.shape(classes))
  _, picked = tf.nn.top_k(score, k=k)
  gather = lambda t: tf.gather(t, picked, batch_dims=1)
  valid = tf.cast(gather(positive), tf.float32)
  return {'rois': gather(matches['rois']),
          'gt_boxes': gather(matches['matched_gt_boxes']),
          'classes': gather(classes) * tf.cast(valid, classes.dtype),
          'gt_indices': tf.maximum(gather(matches['matched_gt_indices']), 0),
          'valid': valid}


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class CollaborativeHead(tf_keras.layers.Layer):
  """RoIs -> dense offsets, coarse mask and the weighted (refined) box."""

  def __init__(self, num_classes: int, num_filters: int = 256,
               num_convs: int = 9, crop_size: int = 14,
               sample_offset: float = 0.5, collaborative: bool = True,
               mask_threshold: float = 0.5,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the head.

    Args:
      num_classes: Classes including background (coarse mask channels).
      num_filters: Width of the conv tower and the deconvs.
      num_convs: conv3x3 layers after the stride-2 conv (the paper's 9).
      crop_size: RoIAlign output side (14; the stride-2 conv halves it to
        the 7x7 grid).
      sample_offset: RoIAlign sub-pixel sample offset.
      collaborative: Weight the cells by the coarse mask (False: 'w/o CL').
      mask_threshold: Cells with M_s above it count (Eqns. 8-9).
      kernel_regularizer: Kernel regularizer.
      **kwargs: Layer arguments.
    """
    super().__init__(**kwargs)
    if crop_size != 2 * GRID:
      raise ValueError(f'collaborative head: crop_size must be {2 * GRID} '
                       f'(stride 2 to the {GRID}x{GRID} grid), got {crop_size}')
    self._config_dict = dict(
        num_classes=num_classes, num_filters=num_filters, num_convs=num_convs,
        crop_size=crop_size, sample_offset=sample_offset,
        collaborative=collaborative, mask_threshold=mask_threshold,
        kernel_regularizer=kernel_regularizer)
    groups = msfem._groups(num_filters)  # pylint: disable=protected-access
    conv = lambda name, **kw: tf_keras.layers.Conv2D(
        num_filters, 3, padding='same', use_bias=False, name=name,
        kernel_regularizer=kernel_regularizer, **kw)
    self.pooler = roi_aligner.MultilevelROIAligner(
        crop_size=crop_size, sample_offset=sample_offset)
    self.tower = tf_keras.Sequential(
        [layer for i in range(num_convs + 1) for layer in (
            conv(f'conv{i}', strides=2 if i == 0 else 1),
            tf_keras.layers.GroupNormalization(groups, name=f'gn{i}'),
            tf_keras.layers.ReLU(name=f'relu{i}'))], name='tower')
    # Softplus, not the public code's ReLU: a ReLU offset stuck at 0 gives a
    # zero-area box, IoU 0 and no gradient (it diverged on the tiny model).
    # Each cell starts with a box of the RoI's size: softplus(b) = 0.5.
    self.offsets = tf_keras.layers.Conv2D(
        4, 3, padding='same', activation='softplus', name='offsets',
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.001),
        bias_initializer=tf_keras.initializers.Constant(
            float(np.log(np.expm1(0.5)))),
        kernel_regularizer=kernel_regularizer)
    self.mask_tower = tf_keras.Sequential([
        tf_keras.layers.Conv2DTranspose(
            num_filters, 2, strides=2, activation='relu', name='deconv0',
            kernel_regularizer=kernel_regularizer),
        tf_keras.layers.Conv2DTranspose(
            num_filters, 2, strides=2, activation='relu', name='deconv1',
            kernel_regularizer=kernel_regularizer),
        tf_keras.layers.Conv2D(
            num_classes, 1, name='mask_logits',
            kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.001),
            kernel_regularizer=kernel_regularizer)], name='coarse_mask')

  def call(self, features: Mapping[str, tf.Tensor], rois: tf.Tensor,
           classes: tf.Tensor) -> dict[str, tf.Tensor]:
    """Runs the head.

    Args:
      features: Pyramid {level: [B, H_l, W_l, C]}.
      rois: [B, K, 4] RoIs in image pixels.
      classes: [B, K] int class of each RoI (its coarse mask channel).

    Returns:
      `offsets` [B, K, 7, 7, 4], `coarse_mask_logits` [B, K, 28, 28] (the
      RoI's class), `cell_weights` [B, K, 7, 7] (M_s) and `refined_boxes`
      [B, K, 4].
    """
    cfg = self._config_dict
    rois = tf.stop_gradient(tf.cast(rois, tf.float32))
    pooled = self.pooler(features, rois)  # [B, K, 14, 14, C]
    batch, k = tf.shape(pooled)[0], tf.shape(pooled)[1]
    x = tf.reshape(pooled, tf.concat([[batch * k], tf.shape(pooled)[2:]], 0))
    x = self.tower(x)
    offsets = tf.cast(self.offsets(x), tf.float32)
    logits = tf.cast(self.mask_tower(x), tf.float32)  # [BK, 28, 28, classes]
    class_ids = tf.reshape(tf.cast(classes, tf.int32), [-1])
    logits = tf.gather(tf.transpose(logits, [0, 3, 1, 2]), class_ids,
                       batch_dims=1)  # [BK, 28, 28]
    pool = MASK_SIZE // GRID
    weights = tf.nn.avg_pool2d(tf.sigmoid(logits)[..., tf.newaxis], pool,
                               pool, 'VALID')[..., 0]
    unflatten = lambda t: tf.reshape(
        t, tf.concat([[batch, k], tf.shape(t)[1:]], 0))
    offsets, logits, weights = map(unflatten, (offsets, logits, weights))
    boxes = cell_boxes(rois, offsets)
    refined = weighted_box(rois, boxes, weights, cfg['mask_threshold'],
                           cfg['collaborative'])
    return {'offsets': offsets, 'coarse_mask_logits': logits,
            'cell_weights': weights, 'refined_boxes': refined}

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    config['kernel_regularizer'] = msfem._serialize(  # pylint: disable=protected-access
        config['kernel_regularizer'])
    return {**super().get_config(), **config}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**msfem._deserialize(config))  # pylint: disable=protected-access


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class CollaborativeRefiner(tf_keras.layers.Layer):
  """The 'roi_box_refiner' part: the collaborative head in the model's path.

  Called between the box stage and the mask branch (see `TwoStageModel`):
  training runs the head on a random subset of jittered positives and
  returns its loss inputs as `collaborative/<key>` outputs; inference
  replaces the first `num_detections` `detection_boxes` by the refined ones
  (the unrefined stay in `unrefined_detection_boxes`) and, with
  `final_masks`, runs the head again on them for `detection_masks`.
  Without `final_masks` the model's mask head makes the masks: it trains on
  the refined boxes (matched to the positives' ground truth) and pools the
  refined detections.
  """

  def __init__(self, head: CollaborativeHead, max_rois_per_image: int = 96,
               jitter: float = 0.15, final_masks: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.head = head
    self._config_dict = dict(head=head, max_rois_per_image=max_rois_per_image,
                             jitter=jitter, final_masks=final_masks)

  def call(self, features: Mapping[str, tf.Tensor],
           outputs: Mapping[str, Any], matches: Mapping[str, tf.Tensor],
           image_shape: tf.Tensor, gt_masks: Optional[tf.Tensor] = None,
           training: Optional[bool] = None
           ) -> tuple[dict[str, Any], dict[str, tf.Tensor]]:
    """Refines boxes.

    Args:
      features: Pyramid {level: [B, H_l, W_l, C]}.
      outputs: The model's outputs so far.
      matches: The box stage's `rois` [B, N, 4] and (training) their
        `matched_gt_boxes`, `matched_gt_classes`, `matched_gt_indices`.
      image_shape: [B, 2] (height, width) of the resized images.
      gt_masks: [B, M, S, S] instance mask crops around their boxes
        (training).
      training: Training mode.

    Returns:
      (outputs, matches) for the mask branch.
    """
    outputs, clip = dict(outputs), image_shape[:, tf.newaxis, :]
    cfg = self._config_dict
    # Keras traces call(training=True) without ground truth when the model
    # is saved (SavedModel export): that is inference.
    if training and 'matched_gt_classes' in matches and gt_masks is not None:
      picked = sample_positives(matches, cfg['max_rois_per_image'])
      rois = tf.stop_gradient(jitter_boxes(picked['rois'], cfg['jitter'],
                                           image_shape))
      head = self.head(features, rois, picked['classes'])
      masks = tf.gather(gt_masks, picked['gt_indices'], batch_dims=1)
      coarse_targets = spatial_transform_ops.crop_mask_in_target_box(
          masks, picked['gt_boxes'], rois, MASK_SIZE, sample_offset=0.5)
      outputs.update({f'collaborative/{key}': value for key, value in (
          ('rois', rois), ('gt_boxes', picked['gt_boxes']),
          ('valid', picked['valid']), ('offsets', head['offsets']),
          ('cell_weights', head['cell_weights']),
          ('coarse_mask_logits', head['coarse_mask_logits']),
          ('coarse_mask_targets', tf.stop_gradient(coarse_targets)))})
      if cfg['final_masks']:
        return outputs, matches
      # The mask head trains on the refined boxes; the box stage's RoIs
      # follow as negatives so its sampler can always draw its fixed count.
      refined = tf.stop_gradient(box_ops.clip_boxes(head['refined_boxes'],
                                                    clip))
      negative = tf.zeros_like(matches['matched_gt_classes'])
      matches = {**matches,
                 'rois': tf.concat([refined, matches['rois']], 1),
                 'matched_gt_boxes': tf.concat(
                     [picked['gt_boxes'], matches['matched_gt_boxes']], 1),
                 'matched_gt_classes': tf.concat(
                     [picked['classes'], negative], 1),
                 'matched_gt_indices': tf.concat(
                     [picked['gt_indices'], matches['matched_gt_indices']], 1)}
      return outputs, matches
    if 'detection_boxes' not in outputs:  # no NMS: nothing to refine
      return outputs, matches
    boxes, classes = outputs['detection_boxes'], outputs['detection_classes']
    head = self.head(features, boxes, classes)
    refined = box_ops.clip_boxes(head['refined_boxes'], clip)
    count = tf.shape(boxes)[1]
    kept = (tf.range(count)[tf.newaxis, :] <
            tf.cast(outputs['num_detections'], tf.int32)[:, tf.newaxis])
    outputs['unrefined_detection_boxes'] = boxes
    outputs['detection_boxes'] = tf.where(kept[..., tf.newaxis], refined,
                                          boxes)
    if cfg['final_masks']:
      final = self.head(features, outputs['detection_boxes'], classes)
      outputs['detection_masks'] = tf.sigmoid(final['coarse_mask_logits'])
    return outputs, matches

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    config['head'] = tf_keras.layers.serialize(self.head)
    return {**super().get_config(), **config}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    config['head'] = tf_keras.layers.deserialize(config['head'])
    return cls(**config)


def coarse_mask_loss(logits: tf.Tensor, targets: tf.Tensor,
                     valid: tf.Tensor) -> tf.Tensor:
  """Mean pixel BCE over the valid RoIs' coarse masks [B, K, 28, 28]."""
  bce = tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.cast(targets, tf.float32), logits=logits)
  per_roi = tf.reduce_mean(bce, axis=[2, 3])
  return tf.reduce_sum(per_roi * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def dense_box_loss(rois: tf.Tensor, gt_boxes: tf.Tensor, offsets: tf.Tensor,
                   cell_weights: tf.Tensor, valid: tf.Tensor,
                   threshold: float = 0.5, collaborative: bool = True,
                   min_iou: float = 1e-6) -> tf.Tensor:
  """Per-cell -log IoU of each cell's box against the ground-truth box.

  Each cell is weighted by its thresholded coarse-mask confidence (the
  public code's weight, gradient included); 'w/o CL' weighs the cells whose
  centre lies inside the ground-truth box by 1 (FCOS's positives). The sum
  is divided by the valid RoIs' cell count (mmdetection's 'mean' of an
  elementwise-weighted loss).

  Args:
    rois: [B, K, 4] the RoIs the head saw.
    gt_boxes: [B, K, 4] their ground-truth boxes.
    offsets: [B, K, G, G, 4] predicted (l, t, r, b).
    cell_weights: [B, K, G, G] M_s of the ground-truth class.
    valid: [B, K] 1 for positive RoIs.
    threshold: Cells with M_s at or below it weigh 0.
    collaborative: False: 'w/o CL' weights.
    min_iou: Added to the IoU (a finite loss for disjoint boxes).
  """
  boxes = cell_boxes(rois, offsets)
  target = tf.broadcast_to(gt_boxes[:, :, tf.newaxis, tf.newaxis, :],
                           tf.shape(boxes))
  if collaborative:
    weights = thresholded(cell_weights, threshold)
  else:
    _, weights = dense_offset_targets(rois, gt_boxes, offsets.shape[2])
  weights = weights * valid[..., tf.newaxis, tf.newaxis]
  loss = -tf.math.log(box_iou(boxes, target) + min_iou)
  cells = float(offsets.shape[2] * offsets.shape[3])
  return tf.reduce_sum(loss * weights) / tf.maximum(
      cells * tf.reduce_sum(valid), 1.0)


def collaborative_terms(part, model_cfg) -> list[registry.LossTerm]:
  """The head's loss terms: the dense boxes and the coarse mask."""
  del model_cfg
  get = lambda outputs, key: outputs[f'collaborative/{key}']
  return [
      registry.LossTerm(
          'collab_dense', part.dense_box_weight,
          lambda o, l: dense_box_loss(
              get(o, 'rois'), get(o, 'gt_boxes'), get(o, 'offsets'),
              get(o, 'cell_weights'), get(o, 'valid'), part.mask_threshold,
              part.collaborative)),
      registry.LossTerm(
          'collab_coarse_mask', part.coarse_mask_weight,
          lambda o, l: coarse_mask_loss(get(o, 'coarse_mask_logits'),
                                        get(o, 'coarse_mask_targets'),
                                        get(o, 'valid'))),
  ]


@registry.register('roi_box_refiner', 'collaborative',
                   losses=collaborative_terms)
def build_collaborative_refiner(part, model_cfg, l2_regularizer=None
                                ) -> CollaborativeRefiner:
  """CoMask's collaborative head from `model.roi_box_refiner.collaborative`."""
  if model_cfg.outer_boxes_scale != 1.0:
    raise ValueError('the collaborative head needs outer_boxes_scale 1.0 '
                     f'(got {model_cfg.outer_boxes_scale})')
  if model_cfg.ej_head.interleaving:
    raise ValueError('the collaborative head picks the mask branch\'s '
                     'training RoIs itself: turn ej_head.interleaving off')
  if not model_cfg.include_mask:
    raise ValueError('the collaborative head needs include_mask: true '
                     '(its coarse mask learns from the instance masks)')
  head = CollaborativeHead(
      num_classes=model_cfg.num_classes, num_filters=part.num_filters,
      num_convs=part.num_convs, crop_size=part.crop_size,
      sample_offset=part.sample_offset, collaborative=part.collaborative,
      mask_threshold=part.mask_threshold, kernel_regularizer=l2_regularizer,
      name='collaborative_head')
  return CollaborativeRefiner(head, max_rois_per_image=part.max_rois_per_image,
                              jitter=part.jitter, final_masks=part.final_masks,
                              name='roi_box_refiner')
