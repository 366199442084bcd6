"""The two-stage family: Mask R-CNN, Cascade Mask R-CNN and the papers that
plug parts into them (SA-FPN + EJ-Head, DATNet, CoMask).

Targets: RPN anchor labels, mask crops (with a mask head) and whatever the
dense auxiliary heads registered. Losses: Model Garden's Mask R-CNN terms
plus the dense auxiliary heads' terms.
"""

from typing import Any, Mapping

import tensorflow as tf
import tf_keras

from tf_mtdet.data.targets import masks as mask_targets
from tf_mtdet.data.targets import rpn
from tf_mtdet.families import base
from tf_mtdet.losses import total
from tf_mtdet.losses import two_stage as two_stage_losses
from tf_mtdet.modeling import factory
from tf_mtdet.modeling import registry


@base.register('two_stage')
class TwoStageFamily(base.Family):
  """RPN proposals -> RoI heads (box, cascade, mask) on a pyramid."""
  has_proposals = True

  def build_model(self) -> tf_keras.Model:
    return factory.build_two_stage_model(self.model_config,
                                         self.config.schedule.weight_decay)

  def call_inference(self, model, images, image_info):
    return model(images, image_shape=image_info[:, 1, :], anchor_boxes=None,
                 training=False)

  def target_generators(self):
    cfg = self.model_config
    generators = [rpn.RpnTargets(
        cfg.min_level, cfg.max_level, cfg.anchor.num_scales,
        cfg.anchor.aspect_ratios, cfg.anchor.anchor_size,
        cfg.rpn_targets.match_threshold, cfg.rpn_targets.unmatched_threshold,
        cfg.rpn_targets.batch_size_per_im, cfg.rpn_targets.fg_fraction)]
    if cfg.include_mask:
      generators.append(mask_targets.MaskCropTargets(
          cfg.mask_sampler.crop_size,
          self.config.train_data.parser.max_num_instances,
          cfg.outer_boxes_scale))
    for part in cfg.dense_aux_heads:
      generator = registry.targets('dense_aux_head', part.type, part.get(), cfg)
      if generator is not None:
        generators.append(generator)
    return generators

  def build_losses(self) -> total.TotalLoss:
    cfg = self.model_config
    terms = two_stage_losses.two_stage_terms(
        cfg.losses, num_stages=1 + len(cfg.roi_sampler.cascade_iou_thresholds
                                       or []),
        class_agnostic_bbox_pred=cfg.detection_head.class_agnostic_bbox_pred,
        include_mask=cfg.mask_head_enabled())
    for part in cfg.dense_aux_heads:
      terms += registry.losses('dense_aux_head', part.type, part.get(), cfg)
    if cfg.roi_box_refiner.type:
      terms += registry.losses('roi_box_refiner', cfg.roi_box_refiner.type,
                               cfg.roi_box_refiner.get(), cfg)
    return total.TotalLoss(terms, cfg.losses.loss_weight)

  def model_inputs(self, labels: Mapping[str, Any],
                   training: bool) -> dict[str, Any]:
    inputs = {'image_shape': labels['image_info'][:, 1, :],
              'anchor_boxes': labels.get('anchor_boxes')}
    if training:
      inputs.update(gt_boxes=labels['gt_boxes'], gt_classes=labels['gt_classes'])
      for key in ('gt_masks', 'gt_outer_boxes'):
        if key in labels:
          inputs[key] = labels[key]
    return inputs
