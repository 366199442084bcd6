"""Config -> model.

Model Garden's `build_maskrcnn` builds the backbone, neck (any decoder in its
registry, ours included), RPN, RoI generator/samplers (cascade too) and
detection generator; the box heads, mask head and poolers come from our
registry by the names in the config, and dense auxiliary heads and fusion are
added when the config names them.
"""

import copy
from typing import Optional

import tf_keras

from official.vision.modeling import factory as mg_factory

from tf_mtdet.config import model as model_config
from tf_mtdet.modeling import necks  # noqa: F401  # registers the necks
from tf_mtdet.modeling import registry
from tf_mtdet.modeling import standard_parts  # noqa: F401  # registers the parts
from tf_mtdet.modeling import two_stage
from tf_mtdet.modeling.heads import boundary_refinement
from tf_mtdet.modeling.heads import joint_head


def l2_regularizer(weight_decay: float
                   ) -> Optional[tf_keras.regularizers.Regularizer]:
  """SGD weight decay `wd` as the equivalent L2 penalty wd / 2 * |w|^2."""
  return tf_keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None


def build_model(config: model_config.TwoStageModel,
                weight_decay: float = 0.0) -> two_stage.TwoStageModel:
  """Builds the two-stage model a config describes.

  Args:
    config: The model config.
    weight_decay: SGD weight decay, applied as L2 regularisation on kernels.

  Returns:
    The (unbuilt) model.
  """
  regularizer = l2_regularizer(weight_decay)
  ej = config.ej_head
  input_specs = tf_keras.layers.InputSpec(shape=[None, *config.input_size])
  base = mg_factory.build_maskrcnn(input_specs, config, regularizer)

  num_stages = len(base.detection_head)
  box_heads = [
      registry.build('box_head', config.detection_head.type, config,
                     regularizer,
                     name='detection_head' if i == 0 else f'detection_head_{i}')
      for i in range(num_stages)]
  box_pooler_config = config
  if ej.enriched_feature:
    box_pooler_config = copy.deepcopy(config)
    box_pooler_config.roi_aligner.crop_size = 14
  roi_pooler = registry.build('roi_pooler', config.roi_aligner.type,
                              box_pooler_config, regularizer)
  mask_pooler = (registry.build('mask_roi_pooler',
                                config.mask_roi_aligner.type, config,
                                regularizer)
                 if config.include_mask else None)
  if ej.boundary_refinement != 'none':
    # One block shared by both branches: EJ-Head's joint RoI pathway.
    refinement = boundary_refinement.BoundaryRefinement(
        ej.boundary_refinement, zero_init_last=ej.zero_init_refinement,
        kernel_regularizer=regularizer, name='boundary_refinement')
    roi_pooler = joint_head.RefinedRoIPooler(roi_pooler, refinement)
    if mask_pooler is not None:
      mask_pooler = joint_head.RefinedRoIPooler(mask_pooler, refinement)
  mask_parts = {}
  if config.include_mask:
    mask_parts = dict(
        mask_head=registry.build('mask_head', config.mask_head.type, config,
                                 regularizer),
        mask_sampler=base.mask_sampler,
        mask_roi_aligner=mask_pooler)
  aux_heads = {name: registry.build('dense_aux_head', name, config, regularizer)
               for name in config.dense_aux_heads}
  fusion = (registry.build('feature_fusion', config.feature_fusion, config,
                           regularizer) if config.feature_fusion else None)
  return two_stage.TwoStageModel(
      backbone=base.backbone,
      decoder=base.decoder,
      rpn_head=base.rpn_head,
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
      interleaving=ej.interleaving,
      interleaving_iou=ej.interleaving_iou,
      **mask_parts)
