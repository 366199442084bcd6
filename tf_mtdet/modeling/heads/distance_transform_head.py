"""DATNet's distance-transform (DT) head (Levinshtein et al., Sec. 3.1).

The semantic head's trunk (`architecture`: 'datnet', the paper's Sec. 3.3
trunk `DATNetDenseHead`, by default; 'panoptic_fpn' is `SemanticHead`),
giving the features F that fusion adds back into the pyramid and K =
len(bin_edges) + 2 classes of binned normalised distance to the instance
boundary. A registered 'dense_aux_head' owning its target (`gt_distance_transform`, made at the
finest level's stride) and its loss (DATNet's focal-style categorical loss).
"""

import tf_keras

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.data.targets import distance_transform as dt_targets
from tf_mtdet.losses import pixel_focal
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.heads import semantic_head

NAME = 'distance_transform'


def _targets(part: two_stage_config.DistanceTransformHead, model_cfg
             ) -> dt_targets.DistanceTransformTargets:
  del model_cfg
  return dt_targets.DistanceTransformTargets(stride=2**part.levels[0],
                                             bin_edges=part.bin_edges)


def _losses(part: two_stage_config.DistanceTransformHead, model_cfg
            ) -> list[registry.LossTerm]:
  del model_cfg
  return [registry.LossTerm(
      NAME, part.loss_weight,
      lambda outputs, labels: pixel_focal.categorical_focal_loss(
          outputs[f'{NAME}/logits'], labels['gt_distance_transform'],
          gamma=part.focal_gamma,
          alpha_background=part.focal_alpha_background, name=NAME))]


@registry.register('dense_aux_head', NAME, targets=_targets, losses=_losses)
def build_distance_transform_head(
    part: two_stage_config.DistanceTransformHead, model_cfg,
    l2_regularizer=None) -> tf_keras.layers.Layer:
  """`{logits [B, H/s, W/s, K], fusion_features [B, H/s, W/s, F]}`,
  s = 2**levels[0]."""
  return semantic_head.build_trunk(part, len(part.bin_edges) + 2, model_cfg,
                                   l2_regularizer, NAME)
