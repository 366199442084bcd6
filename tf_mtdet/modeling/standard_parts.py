"""Standard parts registered under their config names.

'fc' box head and 'fcn' mask head are Model Garden's `DetectionHead` (or,
with `use_norm: false`, its norm-free version) and `MaskHead`; 'level_assigned' is its `MultilevelROIAligner` (RoIAlign on the FPN
level the box size assigns, FPN eq. 1); 'retinanet' is its `RetinaNetHead`.
EJ-Head's switches register as a RoI refinement block and a mask RoI
assigner.
"""

from typing import Optional

import tf_keras

from official.vision.modeling.heads import dense_prediction_heads
from official.vision.modeling.heads import instance_heads
from official.vision.modeling.layers import roi_aligner

from tf_mtdet.config import single_shot as single_shot_config
from tf_mtdet.config import two_stage as model_config
from tf_mtdet.data.targets import anchor_labels
from tf_mtdet.losses import dense_detection
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.heads import boundary_refinement
from tf_mtdet.modeling.heads import interleaving
from tf_mtdet.modeling.heads import norm_free


@registry.register('box_head', 'fc')
def build_fc_box_head(config: model_config.TwoStageModel,
                      l2_regularizer: Optional[tf_keras.regularizers.Regularizer],
                      name: str = 'detection_head') -> tf_keras.layers.Layer:
  head, norm = config.detection_head, config.norm_activation
  head_class = (instance_heads.DetectionHead if head.use_norm
                else norm_free.NormFreeDetectionHead)
  return head_class(
      num_classes=config.num_classes, num_convs=head.num_convs,
      num_filters=head.num_filters, use_separable_conv=head.use_separable_conv,
      num_fcs=head.num_fcs, fc_dims=head.fc_dims,
      class_agnostic_bbox_pred=head.class_agnostic_bbox_pred,
      activation=norm.activation, use_sync_bn=norm.use_sync_bn,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      kernel_regularizer=l2_regularizer, name=name)


@registry.register('mask_head', 'fcn')
def build_fcn_mask_head(config: model_config.TwoStageModel,
                        l2_regularizer: Optional[tf_keras.regularizers.Regularizer]
                        ) -> tf_keras.layers.Layer:
  head, norm = config.mask_head, config.norm_activation
  return instance_heads.MaskHead(
      num_classes=config.num_classes, upsample_factor=head.upsample_factor,
      num_convs=head.num_convs, num_filters=head.num_filters,
      use_separable_conv=head.use_separable_conv, activation=norm.activation,
      use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
      norm_epsilon=norm.norm_epsilon, kernel_regularizer=l2_regularizer,
      class_agnostic=head.class_agnostic)


@registry.register('roi_pooler', 'level_assigned')
def build_level_assigned_pooler(config: model_config.TwoStageModel,
                                l2_regularizer=None) -> tf_keras.layers.Layer:
  del l2_regularizer  # no weights
  return roi_aligner.MultilevelROIAligner(
      crop_size=config.roi_aligner.crop_size,
      sample_offset=config.roi_aligner.sample_offset)


@registry.register('mask_roi_pooler', 'level_assigned')
def build_level_assigned_mask_pooler(config: model_config.TwoStageModel,
                                     l2_regularizer=None
                                     ) -> tf_keras.layers.Layer:
  del l2_regularizer  # no weights
  return roi_aligner.MultilevelROIAligner(
      crop_size=config.mask_roi_aligner.crop_size,
      sample_offset=config.mask_roi_aligner.sample_offset)


@registry.register('roi_refinement', 'boundary_refinement')
def build_boundary_refinement(config: model_config.TwoStageModel,
                              l2_regularizer=None) -> tf_keras.layers.Layer:
  """EJ-Head's Boundary Refinement block (variant from `ej_head`)."""
  ej = config.ej_head
  return boundary_refinement.BoundaryRefinement(
      ej.boundary_refinement, zero_init_last=ej.zero_init_refinement,
      kernel_regularizer=l2_regularizer, name='boundary_refinement')


@registry.register('mask_roi_assigner', 'interleaved')
def build_interleaved_assigner(config: model_config.TwoStageModel,
                               l2_regularizer=None) -> tf_keras.layers.Layer:
  """EJ-Head's Interleaving: masks train on refined boxes re-matched to GT."""
  del l2_regularizer  # no weights
  return interleaving.InterleavedMaskAssigner(
      config.ej_head.interleaving_iou, name='mask_roi_assigner')


@registry.register(
    'dense_head', 'retinanet',
    targets=lambda config: anchor_labels.AnchorLabelTargets(
        config.min_level, config.max_level, config.anchor.num_scales,
        config.anchor.aspect_ratios, config.anchor.anchor_size,
        config.anchor_targets.match_threshold,
        config.anchor_targets.unmatched_threshold),
    losses=dense_detection.focal_terms)
def build_retinanet_head(config: single_shot_config.SingleShotModel,
                         l2_regularizer=None) -> tf_keras.layers.Layer:
  """Model Garden's `RetinaNetHead` (class and box towers per level)."""
  head, norm = config.head, config.norm_activation
  return dense_prediction_heads.RetinaNetHead(
      min_level=config.min_level, max_level=config.max_level,
      num_classes=config.num_classes,
      num_anchors_per_location=(len(config.anchor.aspect_ratios) *
                                config.anchor.num_scales),
      num_convs=head.num_convs, num_filters=head.num_filters,
      use_separable_conv=head.use_separable_conv,
      share_classification_heads=head.share_classification_heads,
      share_level_convs=head.share_level_convs,
      activation=norm.activation, use_sync_bn=norm.use_sync_bn,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      kernel_regularizer=l2_regularizer, name='head')
