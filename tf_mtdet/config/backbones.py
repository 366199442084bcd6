"""Backbone configs: Model Garden's one-of plus the backbones we register in
its registry (`official.vision.modeling.backbones.factory`)."""

import dataclasses

from official.modeling import hyperparams
from official.vision.configs import backbones


@dataclasses.dataclass
class ResNeXt(hyperparams.Config):
  """ResNeXt (Xie et al., CVPR 2017), e.g. 101 32x8d: `model_id` 101,
  `cardinality` 32, `width_per_group` 8.

  Attributes:
    model_id: Depth: 50, 101 or 152.
    cardinality: Groups of the 3x3 convs.
    width_per_group: Channels per group in the first stage (doubling per
      stage).
    depth_multiplier: Scales every width (1.0: the paper's).
  """
  model_id: int = 101
  cardinality: int = 32
  width_per_group: int = 8
  depth_multiplier: float = 1.0


@dataclasses.dataclass
class Backbone(backbones.Backbone):
  """Model Garden's backbone one-of plus 'resnext'."""
  resnext: ResNeXt = dataclasses.field(default_factory=ResNeXt)
