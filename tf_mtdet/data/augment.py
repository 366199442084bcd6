"""The augmentation every family shares, before any part makes its targets.

One decoded example in, one augmented example out: image, boxes, classes,
instance masks and the semantic map flipped and scaled together, the image at
the output size (resized, padded to a multiple of the top pyramid stride) with
Model Garden's `image_info`. Resizing follows Model Garden's
`resize_and_crop_image` (fit into `output_size`) or `_v2` (short side with a
long-side cap, the papers' 800/1333, optionally multi-scale), both with scale
jitter.

Instance masks stay at full (original-image) resolution, flipped with the
image; `masks_at_output_size` renders them in output pixels for a part that
needs them there (a distance-transform target), while mask crops are taken
straight from the full-resolution masks (sharper, and far cheaper than
resizing every mask to the output size first).
"""

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops

from tf_mtdet.config import backbones as backbone_config
from tf_mtdet.config import data as data_config
from tf_mtdet.data import ssd_augment

# What parts may ask the augmentation for besides image, boxes and classes.
MASKS = 'masks'
SEMANTIC = 'semantic'


def normalize(image: tf.Tensor,
              normalization: Optional[backbone_config.InputNormalization]
              = None) -> tf.Tensor:
  """[H, W, 3] uint8 RGB -> float32 `(pixel[channel_order] - mean) / std`,
  as the backbone's weights expect (default: Model Garden's ImageNet RGB
  mean/std)."""
  if normalization is None:
    return preprocess_ops.normalize_image(image)
  image = tf.image.convert_image_dtype(image, tf.float32)  # 0-1
  if normalization.channel_order == 'bgr':
    image = image[..., ::-1]
  return preprocess_ops.normalize_scaled_float_image(
      image, [m / 255.0 for m in normalization.mean],
      [d / 255.0 for d in normalization.std])


def denormalize(image, normalization: Optional[
    backbone_config.InputNormalization] = None):
  """The inverse of `normalize` (numpy): [..., 3] -> RGB 0-255 floats."""
  normalization = normalization or backbone_config.InputNormalization()
  image = (np.asarray(image) * np.asarray(normalization.std, np.float32) +
           np.asarray(normalization.mean, np.float32))
  return image[..., ::-1] if normalization.channel_order == 'bgr' else image


class Augmenter:
  """Decoded example -> augmented example (training) or preprocessed image.

  Augmented example keys: `image` [padded_h, padded_w, 3] normalised,
  `image_info` [4, 2], `boxes` [N, 4] yxyx output pixels, `classes` [N],
  `original_size` [2]; with masks requested `masks` [N, H0, W0] float 0/1
  (full resolution, flipped); with the semantic map requested `semantic`
  [padded_h, padded_w] int32 (padding = ignore label).
  """

  def __init__(self, config: data_config.Augmentation, stride: int,
               needs: Sequence[str] = (),
               normalization: Optional[
                   backbone_config.InputNormalization] = None):
    """Initializes the augmenter.

    Args:
      config: Augmentation options.
      stride: The padded size is a multiple of it (the top pyramid stride).
      needs: Extra fields to produce: `MASKS`, `SEMANTIC`.
      normalization: What the backbone's weights expect (the model's
        `backbone.input_normalization`; None: Model Garden's default).
    """
    unknown = set(needs) - {MASKS, SEMANTIC}
    if unknown:
      raise ValueError(f'unknown augmentation outputs {sorted(unknown)}')
    if config.ssd_augmentation and MASKS in needs:
      raise ValueError('parser.ssd_augmentation does not move instance masks; '
                       'use it with models without a mask head')
    if config.ssd_augmentation and config.max_zoom_out < 1.0:
      raise ValueError(f'parser.max_zoom_out must be >= 1, got '
                       f'{config.max_zoom_out}')
    self._cfg = config
    self._normalization = normalization
    self._needs = frozenset(needs)
    self._short_sides = [int(s) for s in config.short_side]
    if config.resize_mode == 'short_side' and not self._short_sides:
      raise ValueError('resize_mode short_side needs at least one short_side')
    if config.resize_mode == 'fixed':
      self._padded_size = preprocess_ops.compute_padded_size(
          list(config.output_size), stride)
    else:
      # Either orientation can reach the long-side cap.
      self._padded_size = preprocess_ops.compute_padded_size(
          [config.long_side, config.long_side], stride)
    self._dtype = tf.dtypes.as_dtype(config.dtype)

  @property
  def normalization(self) -> Optional[backbone_config.InputNormalization]:
    return self._normalization

  @property
  def needs(self) -> frozenset:
    return self._needs

  @property
  def padded_size(self) -> list[int]:
    return [int(x) for x in self._padded_size]

  @property
  def max_num_instances(self) -> int:
    return self._cfg.max_num_instances

  @property
  def ignore_label(self) -> int:
    return self._cfg.semantic_ignore_label

  def preprocess_image(self, image: tf.Tensor):
    """Inference preprocessing shared with serving: normalize, resize, pad.

    Args:
      image: [height, width, 3] uint8 (or float 0-255) image.

    Returns:
      image: [padded_h, padded_w, 3] normalized, in the configured dtype.
      image_info: [4, 2] Model Garden image info.
    """
    image = normalize(image, self._normalization)
    image, image_info = self._resize(image, training=False)
    return tf.cast(image, self._dtype), image_info

  def _resize(self, image: tf.Tensor, training: bool):
    """Scales and pads an image; returns it and Model Garden's image_info."""
    cfg = self._cfg
    scale_min = cfg.aug_scale_min if training else 1.0
    scale_max = cfg.aug_scale_max if training else 1.0
    if cfg.resize_mode == 'fixed':
      return preprocess_ops.resize_and_crop_image(
          image, list(cfg.output_size), padded_size=self._padded_size,
          aug_scale_min=scale_min, aug_scale_max=scale_max)
    if training and len(self._short_sides) > 1:
      short_side = tf.gather(
          tf.constant(self._short_sides, tf.float32),
          tf.random.uniform([], 0, len(self._short_sides), dtype=tf.int32))
    else:
      short_side = float(max(self._short_sides))
    return preprocess_ops.resize_and_crop_image_v2(
        image, short_side=short_side, long_side=float(cfg.long_side),
        padded_size=self._padded_size, aug_scale_min=scale_min,
        aug_scale_max=scale_max)

  def resize_semantic(self, semantic: tf.Tensor,
                      image_info: tf.Tensor) -> tf.Tensor:
    """[H, W, 1] labels -> [padded_h, padded_w] int32, as the image was resized.

    Nearest-neighbour; padding gets the ignore label.
    """
    # Shift by one so zero padding can be told apart from class 0.
    shifted = tf.cast(semantic, tf.float32)[tf.newaxis] + 1.0
    desired = tf.cast(image_info[1, :], tf.int32)
    resized = preprocess_ops.resize_and_crop_masks(
        shifted, image_info[2, :], desired, image_info[3, :])
    resized = tf.image.pad_to_bounding_box(resized, 0, 0, self._padded_size[0],
                                           self._padded_size[1])
    labels = tf.cast(tf.round(resized[0, :, :, 0]), tf.int32) - 1
    return tf.where(labels < 0, self._cfg.semantic_ignore_label, labels)

  def train(self, data: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Augments one decoded training example (see the class docstring)."""
    cfg = self._cfg
    classes = data['groundtruth_classes']
    boxes = data['groundtruth_boxes']
    masks = (data['groundtruth_instance_masks'] if MASKS in self._needs
             else None)
    keep = tf.ones_like(classes, tf.bool)
    if cfg.skip_crowd_during_training:
      keep &= tf.logical_not(data['groundtruth_is_crowd'])
    if cfg.skip_difficult_during_training and 'groundtruth_difficult' in data:
      keep &= tf.logical_not(data['groundtruth_difficult'])
    indices = tf.where(keep)[:, 0]
    classes = tf.gather(classes, indices)
    boxes = tf.gather(boxes, indices)
    if masks is not None:
      masks = tf.gather(masks, indices)

    image = data['image']
    if cfg.ssd_augmentation:
      # On the decoded image: what follows treats the result as the original.
      semantic_in = (data['groundtruth_semantic'] if SEMANTIC in self._needs
                     else None)
      image, boxes, classes, semantic_in, _ = ssd_augment.ssd_augment(
          image, boxes, classes, semantic_in,
          max_zoom_out=cfg.max_zoom_out,
          photometric=cfg.photometric_distortion,
          ignore_label=cfg.semantic_ignore_label)
      if semantic_in is not None:
        data = dict(data, groundtruth_semantic=semantic_in)
    if cfg.color_jitter > 0:
      # Photometric only: nothing else moves.
      image = preprocess_ops.color_jitter(
          image, cfg.color_jitter, cfg.color_jitter, cfg.color_jitter)
    original_size = tf.shape(image)[0:2]
    image = normalize(image, self._normalization)
    # The semantic map rides along as a fourth image channel so each random
    # flip applies to image, boxes, instance masks and semantic map alike.
    with_semantic = SEMANTIC in self._needs
    if with_semantic:
      image = tf.concat(
          [image, tf.cast(data['groundtruth_semantic'], tf.float32)[..., None]],
          axis=-1)
    image, boxes, masks = preprocess_ops.random_horizontal_flip(
        image, boxes, masks=masks, prob=0.5 if cfg.aug_rand_hflip else 0.0)
    image, boxes, masks = preprocess_ops.random_vertical_flip(
        image, boxes, masks=masks, prob=0.5 if cfg.aug_rand_vflip else 0.0)
    semantic = None
    if with_semantic:
      image, semantic = image[..., :3], image[..., 3:]

    boxes = box_ops.denormalize_boxes(boxes, original_size)
    image, image_info = self._resize(image, training=True)
    boxes = preprocess_ops.resize_and_crop_boxes(
        boxes, image_info[2, :], image_info[1, :], image_info[3, :])
    indices = box_ops.get_non_empty_box_indices(boxes)
    example = {
        'image': tf.cast(image, self._dtype),
        'image_info': image_info,
        'boxes': tf.gather(boxes, indices),
        'classes': tf.gather(classes, indices),
        'original_size': original_size,
    }
    if masks is not None:
      example['masks'] = tf.gather(masks, indices)
    if semantic is not None:
      example['semantic'] = self.resize_semantic(semantic, image_info)
    return example

  def eval(self, data: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Preprocesses one decoded evaluation example (no randomness).

    Returns `image`, `image_info`, `original_size`, and with the semantic map
    requested `semantic` [padded_h, padded_w] int32 and `semantic_original`
    [*semantic_eval_max_size] int32: the map at the original resolution in
    the top-left corner, the ignore label around it.
    """
    image, image_info = self.preprocess_image(data['image'])
    example = {'image': image, 'image_info': image_info,
               'original_size': tf.shape(data['image'])[0:2]}
    if SEMANTIC in self._needs:
      example['semantic'] = self.resize_semantic(
          data['groundtruth_semantic'][..., tf.newaxis], image_info)
      example['semantic_original'] = self.pad_semantic_original(
          data['groundtruth_semantic'], data['source_id'])
    return example

  def pad_semantic_original(self, semantic: tf.Tensor,
                            source_id: tf.Tensor) -> tf.Tensor:
    """[H, W] labels -> [*semantic_eval_max_size] int32, ignore-padded.

    Raises (when run) InvalidArgumentError naming the image and the field
    when the image is larger.
    """
    max_h, max_w = (int(v) for v in self._cfg.semantic_eval_max_size)
    size = tf.shape(semantic)
    fits = tf.logical_and(size[0] <= max_h, size[1] <= max_w)
    check = tf.debugging.Assert(fits, [
        'eval_data.parser.semantic_eval_max_size', [max_h, max_w],
        'is smaller than image', source_id, size])
    with tf.control_dependencies([check]):
      labels = tf.cast(semantic, tf.int32)
    return tf.pad(labels, [[0, max_h - size[0]], [0, max_w - size[1]]],
                  constant_values=self._cfg.semantic_ignore_label)


def masks_at_output_size(example: Mapping[str, Any],
                         padded_size: Sequence[int],
                         stride: int = 1) -> tf.Tensor:
  """Full-resolution instance masks rendered in output pixels.

  Args:
    example: An augmented training example with `masks` and `image_info`.
    padded_size: The augmenter's padded output size.
    stride: Render at 1/stride of the output size (e.g. a stride-4 target).

  Returns:
    [N, padded_h / stride, padded_w / stride] float32 0/1 (nearest
    neighbour, as Model Garden's `resize_and_crop_masks`).
  """
  masks = tf.cast(example['masks'], tf.float32)[..., tf.newaxis]
  info = example['image_info']
  scale = info[2, :] / stride
  desired = tf.cast(tf.math.ceil(info[1, :] / stride), tf.int32)
  resized = preprocess_ops.resize_and_crop_masks(
      masks, scale, desired, info[3, :] / stride)
  height, width = padded_size[0] // stride, padded_size[1] // stride
  resized = tf.image.pad_to_bounding_box(resized, 0, 0, height, width)
  return resized[..., 0]


def pad_instances(example: Mapping[str, tf.Tensor], max_num_instances: int
                  ) -> dict[str, tf.Tensor]:
  """`gt_boxes` [max, 4] and `gt_classes` [max], -1 padded (every family)."""
  return {
      'gt_boxes': preprocess_ops.clip_or_pad_to_fixed_size(
          example['boxes'], max_num_instances, -1),
      'gt_classes': preprocess_ops.clip_or_pad_to_fixed_size(
          example['classes'], max_num_instances, -1),
  }

