"""Backbone configs: Model Garden's one-of plus the backbones we register in
its registry (`official.vision.modeling.backbones.factory`), and the input
normalisation the backbone's weights expect."""

import dataclasses
from typing import List

from official.modeling import hyperparams
from official.vision.configs import backbones

# Per-channel mean and standard deviation in 0-255 pixels, in the channel
# order the weights take.
# torchvision / timm ImageNet weights (and Model Garden's MEAN_NORM /
# STDDEV_NORM): RGB.
TORCHVISION_MEAN = [123.675, 116.28, 103.53]
TORCHVISION_STD = [58.395, 57.12, 57.375]
# MSRA's caffe2 ResNets (Detectron, maskrcnn-benchmark): BGR, mean only.
CAFFE2_MEAN = [102.9801, 115.9465, 122.7717]
CAFFE2_STD = [1.0, 1.0, 1.0]
# FAIR's caffe2 ResNeXt-101 32x8d: BGR, with the ImageNet deviation.
FAIR_X101_STD = [57.375, 57.12, 58.395]
CHANNEL_ORDERS = ('rgb', 'bgr')


@dataclasses.dataclass
class InputNormalization(hyperparams.Config):
  """How images are normalised before the backbone (training, evaluation
  and serving alike): `(pixel[channel_order] - mean) / std`, pixels 0-255.

  The default is Model Garden's (and torchvision's) ImageNet RGB mean/std;
  MSRA caffe2 weights want BGR with the mean only.

  Attributes:
    channel_order: 'rgb', or 'bgr' to reverse the decoded RGB channels.
    mean: Per-channel mean (0-255), in `channel_order`.
    std: Per-channel standard deviation (0-255), in `channel_order`.
  """
  channel_order: str = 'rgb'
  mean: List[float] = dataclasses.field(
      default_factory=lambda: list(TORCHVISION_MEAN))
  std: List[float] = dataclasses.field(
      default_factory=lambda: list(TORCHVISION_STD))

  def __post_init__(self, *args, **kwargs):
    super().__post_init__(*args, **kwargs)
    if self.channel_order not in CHANNEL_ORDERS:
      raise ValueError(f'input_normalization.channel_order must be one of '
                       f'{CHANNEL_ORDERS}, got {self.channel_order!r}')
    for field in ('mean', 'std'):
      values = list(getattr(self, field))
      if len(values) != 3:
        raise ValueError(f'input_normalization.{field} needs 3 values, got '
                         f'{values}')
    if any(s <= 0 for s in self.std):
      raise ValueError(f'input_normalization.std must be positive, got '
                       f'{list(self.std)}')


@dataclasses.dataclass
class ResNeXt(hyperparams.Config):
  """ResNeXt (Xie et al., CVPR 2017), e.g. 101 32x8d: `model_id` 101,
  `cardinality` 32, `width_per_group` 8; a ResNet is cardinality 1, width 64.

  Attributes:
    model_id: Depth: 14, 26, 50, 101 or 152.
    cardinality: Groups of the 3x3 convs.
    width_per_group: Channels per group in the first stage (doubling per
      stage).
    depth_multiplier: Scales every width (1.0: the paper's).
    stride_in_1x1: The block's stride in its first 1x1 conv (MSRA caffe2
      weights) instead of the 3x3 (torchvision, FAIR ResNeXt).
    padding: 'same' (TensorFlow) or 'symmetric' (PyTorch/caffe2: converted
      weights) for the strided convs and the stem max-pool.
    frozen_bn: Every BatchNormalization a fixed scale and bias (ImageNet
      statistics; maskrcnn-benchmark's FrozenBatchNorm).
    freeze_at: No gradient for the stem (1) and res2..res<freeze_at> (2-5);
      0 trains everything.
  """
  model_id: int = 101
  cardinality: int = 32
  width_per_group: int = 8
  depth_multiplier: float = 1.0
  stride_in_1x1: bool = False
  padding: str = 'same'
  frozen_bn: bool = False
  freeze_at: int = 0


@dataclasses.dataclass
class Backbone(backbones.Backbone):
  """Model Garden's backbone one-of plus 'resnext', and the input
  normalisation its weights expect (for any type)."""
  resnext: ResNeXt = dataclasses.field(default_factory=ResNeXt)
  input_normalization: InputNormalization = dataclasses.field(
      default_factory=InputNormalization)

  def as_dict(self):
    # The one-of writes only the chosen type; the normalisation is for all.
    return {**super().as_dict(),
            'input_normalization': self.input_normalization.as_dict()}
