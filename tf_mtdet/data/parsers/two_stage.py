"""Parser for two-stage (Mask R-CNN family) models.

Extends Model Garden's `maskrcnn_input.Parser` with
  * short-side resizing with a long-side cap (800/1333) and multi-scale
    training (a short side drawn per image), besides Model Garden's fit-into-
    `output_size` resizing; both keep scale jitter and pad to a multiple of the
    top pyramid stride;
  * the per-image semantic class map (`gt_semantic`), flipped, scaled and
    padded exactly as the image (padding gets the ignore label);
  * dropping VOC `difficult` objects in training, as crowd objects are.
Anchors, RPN targets and mask crops are Model Garden's.
"""

from typing import Optional, Sequence

import tensorflow as tf

from official.vision.dataloaders import maskrcnn_input
from official.vision.dataloaders import utils
from official.vision.ops import anchor
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops

from tf_mtdet.config import data as data_config


class TwoStageParser(maskrcnn_input.Parser):
  """Parses decoded examples into `(image, labels)` for two-stage models.

  Training labels (per image, before batching): Model Garden's `anchor_boxes`,
  `image_info` [4, 2], `rpn_score_targets`, `rpn_box_targets`, `gt_boxes`
  [max_num_instances, 4] (yxyx, scaled-image pixels, -1 padded), `gt_classes`
  [max_num_instances], and with masks `gt_outer_boxes`, `gt_masks`
  [max_num_instances, mask_crop_size, mask_crop_size]; with semantic
  `gt_semantic` [padded_h, padded_w] int32.

  Evaluation labels: `source_id` (int64), `image_info`, `anchor_boxes`,
  `groundtruths` (Model Garden's padded ground truth dict) and, with semantic,
  `gt_semantic`.
  """

  def __init__(self,
               output_size: Sequence[int],
               min_level: int,
               max_level: int,
               num_scales: int,
               aspect_ratios: Sequence[float],
               anchor_size: float,
               resize_mode: str = 'fixed',
               short_side: Sequence[int] = (800,),
               long_side: int = 1333,
               include_semantic: bool = False,
               semantic_ignore_label: int = 255,
               skip_difficult_during_training: bool = True,
               **kwargs):
    super().__init__(output_size=list(output_size), min_level=min_level,
                     max_level=max_level, num_scales=num_scales,
                     aspect_ratios=list(aspect_ratios), anchor_size=anchor_size,
                     **kwargs)
    if resize_mode not in ('fixed', 'short_side'):
      raise ValueError(f'unknown resize_mode {resize_mode!r}')
    if resize_mode == 'short_side' and not short_side:
      raise ValueError('resize_mode short_side needs at least one short_side')
    self._resize_mode = resize_mode
    self._short_sides = [int(s) for s in short_side]
    self._long_side = int(long_side)
    self._include_semantic = include_semantic
    self._ignore_label = semantic_ignore_label
    self._skip_difficult = skip_difficult_during_training
    stride = 2**max_level
    if resize_mode == 'fixed':
      self._padded_size = preprocess_ops.compute_padded_size(
          list(output_size), stride)
    else:
      # Either orientation can reach the long-side cap.
      self._padded_size = preprocess_ops.compute_padded_size(
          [self._long_side, self._long_side], stride)

  @classmethod
  def from_config(cls, parser: data_config.TwoStageParser,
                  anchor_cfg: data_config.AnchorConfig) -> 'TwoStageParser':
    return cls(
        output_size=parser.output_size,
        min_level=anchor_cfg.min_level,
        max_level=anchor_cfg.max_level,
        num_scales=anchor_cfg.num_scales,
        aspect_ratios=anchor_cfg.aspect_ratios,
        anchor_size=anchor_cfg.anchor_size,
        resize_mode=parser.resize_mode,
        short_side=parser.short_side,
        long_side=parser.long_side,
        include_semantic=parser.include_semantic,
        semantic_ignore_label=parser.semantic_ignore_label,
        skip_difficult_during_training=parser.skip_difficult_during_training,
        rpn_match_threshold=parser.rpn_match_threshold,
        rpn_unmatched_threshold=parser.rpn_unmatched_threshold,
        rpn_batch_size_per_im=parser.rpn_batch_size_per_im,
        rpn_fg_fraction=parser.rpn_fg_fraction,
        aug_rand_hflip=parser.aug_rand_hflip,
        aug_rand_vflip=parser.aug_rand_vflip,
        aug_scale_min=parser.aug_scale_min,
        aug_scale_max=parser.aug_scale_max,
        aug_type=parser.aug_type,
        skip_crowd_during_training=parser.skip_crowd_during_training,
        max_num_instances=parser.max_num_instances,
        include_mask=parser.include_mask,
        mask_crop_size=parser.mask_crop_size,
        dtype=parser.dtype)

  @property
  def padded_size(self) -> list[int]:
    return list(self._padded_size)

  def preprocess_image(self, image: tf.Tensor):
    """Inference preprocessing shared with serving: normalize, resize, pad.

    Args:
      image: [height, width, 3] uint8 (or float 0-255) image.

    Returns:
      image: [padded_h, padded_w, 3] normalized, in the parser's dtype.
      image_info: [4, 2] Model Garden image info.
    """
    image = preprocess_ops.normalize_image(image)
    image, image_info = self._resize(image, training=False)
    return tf.cast(image, self._dtype), image_info

  def _resize(self, image: tf.Tensor, training: bool):
    """Scales and pads an image; returns it and Model Garden's image_info."""
    scale_min = self._aug_scale_min if training else 1.0
    scale_max = self._aug_scale_max if training else 1.0
    if self._resize_mode == 'fixed':
      return preprocess_ops.resize_and_crop_image(
          image, self._output_size, padded_size=self._padded_size,
          aug_scale_min=scale_min, aug_scale_max=scale_max)
    if training and len(self._short_sides) > 1:
      short_side = tf.gather(
          tf.constant(self._short_sides, tf.float32),
          tf.random.uniform([], 0, len(self._short_sides), dtype=tf.int32))
    else:
      short_side = float(max(self._short_sides))
    return preprocess_ops.resize_and_crop_image_v2(
        image, short_side=short_side, long_side=float(self._long_side),
        padded_size=self._padded_size, aug_scale_min=scale_min,
        aug_scale_max=scale_max)

  def _resize_semantic(self, semantic: tf.Tensor,
                       image_info: tf.Tensor) -> tf.Tensor:
    """[H, W, 1] labels -> [padded_h, padded_w] int32, as the image was resized."""
    # Shift by one so zero padding can be told apart from class 0.
    shifted = tf.cast(semantic, tf.float32)[tf.newaxis] + 1.0
    desired = tf.cast(image_info[1, :], tf.int32)
    resized = preprocess_ops.resize_and_crop_masks(
        shifted, image_info[2, :], desired, image_info[3, :])
    resized = tf.image.pad_to_bounding_box(resized, 0, 0, self._padded_size[0],
                                           self._padded_size[1])
    labels = tf.cast(tf.round(resized[0, :, :, 0]), tf.int32) - 1
    return tf.where(labels < 0, self._ignore_label, labels)

  def _parse_train_data(self, data):
    classes = data['groundtruth_classes']
    boxes = data['groundtruth_boxes']
    masks = data['groundtruth_instance_masks'] if self._include_mask else None

    keep = tf.ones_like(classes, tf.bool)
    if self._skip_crowd_during_training:
      keep &= tf.logical_not(data['groundtruth_is_crowd'])
    if self._skip_difficult and 'groundtruth_difficult' in data:
      keep &= tf.logical_not(data['groundtruth_difficult'])
    indices = tf.where(keep)[:, 0]
    classes = tf.gather(classes, indices)
    boxes = tf.gather(boxes, indices)
    if masks is not None:
      masks = tf.gather(masks, indices)

    image = data['image']
    if self._augmenter is not None:
      image = self._augmenter.distort(image)
    image_shape = tf.shape(image)[0:2]
    image = preprocess_ops.normalize_image(image)

    # The semantic map rides along as a fourth image channel so each random
    # flip applies to image, boxes, instance masks and semantic map alike.
    if self._include_semantic:
      image = tf.concat(
          [image, tf.cast(data['groundtruth_semantic'], tf.float32)[..., None]],
          axis=-1)
    image, boxes, masks = preprocess_ops.random_horizontal_flip(
        image, boxes, masks=masks,
        prob=tf.where(self._aug_rand_hflip, 0.5, 0.0))
    image, boxes, masks = preprocess_ops.random_vertical_flip(
        image, boxes, masks=masks,
        prob=tf.where(self._aug_rand_vflip, 0.5, 0.0))
    semantic = None
    if self._include_semantic:
      image, semantic = image[..., :3], image[..., 3:]

    boxes = box_ops.denormalize_boxes(boxes, image_shape)
    image, image_info = self._resize(image, training=True)
    image_height, image_width, _ = image.get_shape().as_list()
    image_scale, offset = image_info[2, :], image_info[3, :]
    boxes = preprocess_ops.resize_and_crop_boxes(boxes, image_scale,
                                                 image_info[1, :], offset)
    indices = box_ops.get_non_empty_box_indices(boxes)
    boxes = tf.gather(boxes, indices)
    classes = tf.gather(classes, indices)

    labels = {}
    if self._include_mask:
      outer_boxes = box_ops.compute_outer_boxes(boxes, image_info[1, :],
                                                self._outer_boxes_scale)
      masks = tf.gather(masks, indices)
      # Crop boxes back in normalized original-image coordinates.
      crop_boxes = outer_boxes + tf.tile(offset[tf.newaxis], [1, 2])
      crop_boxes /= tf.tile(image_scale[tf.newaxis], [1, 2])
      crop_boxes = box_ops.normalize_boxes(crop_boxes, image_shape)
      masks = tf.image.crop_and_resize(
          masks[..., tf.newaxis], crop_boxes,
          box_indices=tf.range(tf.shape(masks)[0], dtype=tf.int32),
          crop_size=[self._mask_crop_size, self._mask_crop_size],
          method='bilinear')[..., 0]
      labels['gt_outer_boxes'] = preprocess_ops.clip_or_pad_to_fixed_size(
          outer_boxes, self._max_num_instances, -1)
      labels['gt_masks'] = preprocess_ops.clip_or_pad_to_fixed_size(
          masks, self._max_num_instances, -1)

    anchor_boxes = anchor.build_anchor_generator(
        min_level=self._min_level, max_level=self._max_level,
        num_scales=self._num_scales, aspect_ratios=self._aspect_ratios,
        anchor_size=self._anchor_size)(image_size=(image_height, image_width))
    rpn_score_targets, rpn_box_targets = anchor.RpnAnchorLabeler(
        self._rpn_match_threshold, self._rpn_unmatched_threshold,
        self._rpn_batch_size_per_im, self._rpn_fg_fraction).label_anchors(
            anchor_boxes, boxes, tf.cast(classes[:, tf.newaxis], tf.float32))

    labels.update({
        'anchor_boxes': anchor_boxes,
        'image_info': image_info,
        'rpn_score_targets': rpn_score_targets,
        'rpn_box_targets': rpn_box_targets,
        'gt_boxes': preprocess_ops.clip_or_pad_to_fixed_size(
            boxes, self._max_num_instances, -1),
        'gt_classes': preprocess_ops.clip_or_pad_to_fixed_size(
            classes, self._max_num_instances, -1),
    })
    if semantic is not None:
      labels['gt_semantic'] = self._resize_semantic(semantic, image_info)
    return tf.cast(image, self._dtype), labels

  def _parse_eval_data(self, data):
    image_shape = tf.shape(data['image'])[0:2]
    image, image_info = self.preprocess_image(data['image'])
    image_height, image_width, _ = image.get_shape().as_list()
    anchor_boxes = anchor.build_anchor_generator(
        min_level=self._min_level, max_level=self._max_level,
        num_scales=self._num_scales, aspect_ratios=self._aspect_ratios,
        anchor_size=self._anchor_size)(image_size=(image_height, image_width))

    boxes = box_ops.denormalize_boxes(data['groundtruth_boxes'], image_shape)
    source_id = utils.process_source_id(data['source_id'])
    groundtruths = {
        'source_id': source_id,
        'height': data['height'],
        'width': data['width'],
        'num_detections': tf.shape(data['groundtruth_classes'])[0],
        'boxes': boxes,
        'classes': data['groundtruth_classes'],
        'areas': data['groundtruth_area'],
        'is_crowds': tf.cast(data['groundtruth_is_crowd'], tf.int32),
    }
    groundtruths = utils.pad_groundtruths_to_fixed_size(
        groundtruths, self._max_num_instances)
    labels = {
        'source_id': source_id,
        'image_info': image_info,
        'anchor_boxes': anchor_boxes,
        'groundtruths': groundtruths,
    }
    if self._include_semantic:
      labels['gt_semantic'] = self._resize_semantic(
          data['groundtruth_semantic'][..., tf.newaxis], image_info)
    return image, labels


def build_parser(parser: data_config.TwoStageParser,
                 anchor_cfg: Optional[data_config.AnchorConfig] = None
                 ) -> TwoStageParser:
  return TwoStageParser.from_config(parser,
                                    anchor_cfg or data_config.AnchorConfig())
