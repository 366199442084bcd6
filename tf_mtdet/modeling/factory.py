"""Config -> model, for each family's meta-architecture.

Model Garden's `build_maskrcnn` / `build_retinanet` build the backbone, the
neck (any decoder in its registry, ours included), RPN, RoI generator and
samplers (cascade too), anchors and detection generators; the heads, poolers,
RoI refinement, mask RoI assigner and dense auxiliary heads come from our part
registry by the names in the config.
"""

from typing import Optional

import tf_keras

from official.vision.modeling import factory as mg_factory
from official.vision.modeling import retinanet_model
from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.modeling.decoders import factory as decoder_factory
from official.vision.modeling.layers import detection_generator

from tf_mtdet.config import single_shot as single_shot_config
from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import feature_fusion  # noqa: F401  # registers 'sum'
from tf_mtdet.modeling import backbones  # noqa: F401  # registers backbones
from tf_mtdet.modeling import conv_sum_fusion  # noqa: F401  # registers
from tf_mtdet.modeling import necks  # noqa: F401  # registers the necks
from tf_mtdet.modeling import registry
from tf_mtdet.modeling import standard_parts  # noqa: F401  # registers parts
from tf_mtdet.modeling import single_shot
from tf_mtdet.modeling import ssd_extra_levels
from tf_mtdet.modeling import two_stage
from tf_mtdet.modeling.poolers import multi_scale_attention  # noqa: F401
from tf_mtdet.modeling.heads import joint_head
from tf_mtdet.modeling.heads import norm_free
from tf_mtdet.modeling.heads import pcm_head  # noqa: F401  # registers
from tf_mtdet.modeling.heads import semantic_head  # noqa: F401  # registers
from tf_mtdet.modeling.heads import classification_head  # noqa: F401
from tf_mtdet.modeling.heads import collaborative_head  # noqa: F401
from tf_mtdet.modeling.heads import distance_transform_head  # noqa: F401
from tf_mtdet.modeling.heads import res5_head  # noqa: F401  # registers
from tf_mtdet.modeling.heads import ssd_head  # noqa: F401  # registers


def l2_regularizer(weight_decay: float
                   ) -> Optional[tf_keras.regularizers.Regularizer]:
  """SGD weight decay `wd` as the equivalent L2 penalty wd / 2 * |w|^2."""
  return tf_keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None


def box_pooler_config(config: two_stage_config.TwoStageModel
                      ) -> two_stage_config.TwoStageModel:
  """The config the box RoI pooler is built from: EJ-Head's Enriched Feature
  pools 14x14 instead of `roi_aligner.crop_size`."""
  if not config.ej_head.enriched_feature:
    return config
  enriched = config.replace()
  enriched.roi_aligner.crop_size = 14
  return enriched


def build_dense_aux_heads(config, regularizer) -> dict[str, tf_keras.layers.Layer]:
  """`{type: layer}` for the config's dense auxiliary heads."""
  heads = {}
  for part in config.dense_aux_heads:
    if part.type in heads:
      raise ValueError(f'dense auxiliary head {part.type!r} is listed twice')
    heads[part.type] = registry.build('dense_aux_head', part.type, part.get(),
                                      config, regularizer)
  return heads


def build_rpn_head(config: two_stage_config.TwoStageModel, regularizer
                   ) -> norm_free.NormFreeRPNHead:
  """Model Garden's RPN head as `build_maskrcnn` makes it, without norms."""
  head, norm = config.rpn_head, config.norm_activation
  return norm_free.NormFreeRPNHead(
      min_level=config.min_level, max_level=config.max_level,
      num_anchors_per_location=(len(config.anchor.aspect_ratios) *
                                config.anchor.num_scales),
      num_convs=head.num_convs, num_filters=head.num_filters,
      use_separable_conv=head.use_separable_conv,
      activation=norm.activation, kernel_regularizer=regularizer,
      name='rpn_head')


def build_two_stage_model(config: two_stage_config.TwoStageModel,
                          weight_decay: float = 0.0
                          ) -> two_stage.TwoStageModel:
  """Builds the two-stage model a config describes (unbuilt).

  Args:
    config: The family's model config.
    weight_decay: SGD weight decay, applied as L2 regularisation on kernels.
  """
  regularizer = l2_regularizer(weight_decay)
  ej = config.ej_head
  input_specs = tf_keras.layers.InputSpec(shape=[None, *config.input_size])
  base = mg_factory.build_maskrcnn(input_specs, config, regularizer)
  rpn_head = base.rpn_head if config.rpn_head.use_norm else build_rpn_head(
      config, regularizer)

  box_heads = [
      registry.build('box_head', config.detection_head.type, config,
                     regularizer,
                     name='detection_head' if i == 0 else f'detection_head_{i}')
      for i in range(len(base.detection_head))]
  roi_pooler = registry.build('roi_pooler', config.roi_aligner.type,
                              box_pooler_config(config), regularizer)
  mask_pooler = (registry.build('mask_roi_pooler',
                                config.mask_roi_aligner.type, config,
                                regularizer)
                 if config.mask_head_enabled() else None)
  if ej.boundary_refinement != 'none':
    # One block shared by both branches: EJ-Head's joint RoI pathway.
    refinement = registry.build('roi_refinement', 'boundary_refinement',
                                config, regularizer)
    roi_pooler = joint_head.RefinedRoIPooler(roi_pooler, refinement)
    if mask_pooler is not None:
      mask_pooler = joint_head.RefinedRoIPooler(mask_pooler, refinement)
  if config.roi_trunk.type:
    # DATNet Heavy: one trunk (res5) on the pooled RoIs feeds both branches;
    # the mask branch runs it on its own RoIs (the sampled positives in
    # training, the detections at inference), as the paper's shared res5.
    trunk = registry.build('roi_refinement', config.roi_trunk.type, config,
                           regularizer)
    roi_pooler = joint_head.RefinedRoIPooler(roi_pooler, trunk,
                                             name='roi_trunk_pooler')
    if mask_pooler is not None:
      mask_pooler = (roi_pooler if config.roi_trunk.share_pooler else
                     joint_head.RefinedRoIPooler(mask_pooler, trunk))
  mask_parts = {}
  if config.mask_head_enabled():
    mask_parts = dict(
        mask_head=registry.build('mask_head', config.mask_head.type, config,
                                 regularizer),
        mask_sampler=base.mask_sampler,
        mask_roi_aligner=mask_pooler,
        mask_roi_assigner=(registry.build('mask_roi_assigner', 'interleaved',
                                          config, regularizer)
                           if ej.interleaving else None))
  aux_heads = build_dense_aux_heads(config, regularizer)
  fusion = (registry.build('feature_fusion', config.feature_fusion.type,
                           config.feature_fusion.get(), config, regularizer)
            if config.feature_fusion.type else None)
  return two_stage.TwoStageModel(
      backbone=base.backbone,
      decoder=base.decoder,
      rpn_head=rpn_head,
      detection_head=box_heads,
      roi_generator=base.roi_generator,
      roi_sampler=base.roi_sampler,
      roi_aligner=roi_pooler,
      detection_generator=base.detection_generator,
      class_agnostic_bbox_pred=config.detection_head.class_agnostic_bbox_pred,
      cascade_class_ensemble=config.detection_head.cascade_class_ensemble,
      min_level=config.min_level,
      max_level=config.max_level,
      num_scales=config.anchor.num_scales,
      aspect_ratios=config.anchor.aspect_ratios,
      anchor_size=config.anchor.anchor_size,
      outer_boxes_scale=config.outer_boxes_scale,
      dense_aux_heads=aux_heads,
      feature_fusion=fusion,
      roi_box_refiner=build_roi_box_refiner(config, regularizer),
      **mask_parts)


def build_roi_box_refiner(config, regularizer
                          ) -> Optional[tf_keras.layers.Layer]:
  """The config's 'roi_box_refiner' part (CoMask's collaborative head), or
  None."""
  part = config.roi_box_refiner
  if not part.type:
    return None
  return registry.build('roi_box_refiner', part.type, part.get(), config,
                        regularizer)


def build_single_shot_model(config: single_shot_config.SingleShotModel,
                            weight_decay: float = 0.0
                            ) -> retinanet_model.RetinaNetModel:
  """Builds the single-shot model a config describes (unbuilt): Model
  Garden's `RetinaNetModel` with the registered dense head, or with an SSD
  head or a segmentation head our `SingleShotModel`."""
  regularizer = l2_regularizer(weight_decay)
  input_specs = tf_keras.layers.InputSpec(shape=[None, *config.input_size])
  if config.head.type != 'retinanet' or config.seg_head.type:
    return build_ssd_model(config, input_specs, regularizer)
  base = mg_factory.build_retinanet(input_specs, config, regularizer)
  return retinanet_model.RetinaNetModel(
      backbone=base.backbone,
      decoder=base.decoder,
      head=registry.build('dense_head', config.head.type, config, regularizer),
      detection_generator=base.detection_generator,
      min_level=config.min_level,
      max_level=config.max_level,
      num_scales=config.anchor.num_scales,
      aspect_ratios=config.anchor.aspect_ratios,
      anchor_size=config.anchor.anchor_size)


def build_ssd_model(config: single_shot_config.SingleShotModel,
                    input_specs: tf_keras.layers.InputSpec,
                    regularizer: Optional[tf_keras.regularizers.Regularizer]
                    ) -> single_shot.SingleShotModel:
  """IvaNet-style model: registered backbone, SSD extra levels (none
  with `extra_levels.num_levels` 0), neck, dense head ('' for none) and
  segmentation head (`seg_head.type`, None for none)."""
  backbone = backbone_factory.build_backbone(
      input_specs, config.backbone, config.norm_activation, regularizer)
  extra_levels = ssd_extra_levels.build_ssd_extra_levels(
      backbone.output_specs, config, regularizer)
  top = config.max_level - ssd_extra_levels.num_levels(config)
  trunk_specs = {str(l): backbone.output_specs[str(l)]
                 for l in range(config.min_level, top + 1)}
  if extra_levels is not None:
    trunk_specs.update(extra_levels.output_specs)
  decoder = decoder_factory.build_decoder(trunk_specs, config, regularizer)
  head = (registry.build('dense_head', config.head.type, config, regularizer)
          if config.head.type else None)
  seg_head = (registry.build('dense_aux_head', config.seg_head.type,
                             config.seg_head.get(), config, regularizer)
              if config.seg_head.type else None)
  gen = config.ssd_detection_generator
  return single_shot.SingleShotModel(
      backbone=backbone, decoder=decoder, num_classes=config.num_classes,
      min_level=config.min_level, max_level=config.max_level,
      extra_levels=extra_levels, head=head, seg_head=seg_head,
      detection_generator=detection_generator.DetectionGenerator(
          pre_nms_top_k=gen.pre_nms_top_k,
          pre_nms_score_threshold=gen.pre_nms_score_threshold,
          nms_iou_threshold=gen.nms_iou_threshold,
          max_num_detections=gen.max_num_detections, nms_version='v2'),
      anchor_config=config.ssd_anchors,
      variances=config.head.ssd_loss.variances)
