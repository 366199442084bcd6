"""Model configuration of the single-shot (RetinaNet / SSD) meta-architecture.

Model Garden's `RetinaNet` config describes the standard parts (backbone,
FPN, anchors, dense head, multilevel detection generator). The dense head is
a registered 'dense_head' part (`head.type`), which owns its anchor targets
and loss; IvaNet's SSD head, LTD neck and segmentation head plug in the same
way.
"""

import dataclasses
from typing import List, Optional

from official.modeling import hyperparams
from official.vision.configs import backbones
from official.vision.configs import decoders
from official.vision.configs import retinanet as retinanet_cfg

from tf_mtdet.config import backbones as tf_mtdet_backbones
from tf_mtdet.config import two_stage


@dataclasses.dataclass
class AnchorTargets(hyperparams.Config):
  """Anchor labelling: IoU >= match_threshold positive, < unmatched_threshold
  negative, between ignored (RetinaNet paper: 0.5 / 0.4)."""
  match_threshold: float = 0.5
  unmatched_threshold: float = 0.4


@dataclasses.dataclass
class FocalLoss(hyperparams.Config):
  """RetinaNet's loss: sigmoid focal loss on classes, Huber loss on boxes,
  both normalised by the number of positive anchors."""
  alpha: float = 0.25
  gamma: float = 2.0
  huber_delta: float = 0.1
  box_weight: float = 50.0


@dataclasses.dataclass
class SSDResNet(hyperparams.Config):
  """ResNet cut after conv4_x plus SSD extra levels (BlitzNet's ResNet SSD).

  Attributes:
    model_id: ResNet depth (Model Garden's `RESNET_SPECS`).
    depth_multiplier: Width multiplier of the ResNet part.
    num_extra_levels: Levels after conv4_x (4 at 300: 10/5/3/1; 5 at 512:
      16/8/4/2/1).
    extra_filters: Bottleneck width of the extra levels (outputs 4x that).
    extra_blocks: Bottleneck units per extra level (the first has stride 2).
    global_pool_last: The last extra level is a global average pool (1x1).
  """
  model_id: int = 50
  depth_multiplier: float = 1.0
  num_extra_levels: int = 4
  extra_filters: int = 128
  extra_blocks: int = 2
  global_pool_last: bool = True


@dataclasses.dataclass
class Backbone(tf_mtdet_backbones.Backbone):
  """Model Garden's backbones plus 'resnext' (with the input normalisation
  its weights expect) and 'ssd_resnet'."""
  ssd_resnet: SSDResNet = dataclasses.field(default_factory=SSDResNet)


@dataclasses.dataclass
class LocalTopDown(hyperparams.Config):
  """LTD neck (LTD-SSD) with IvaNet's 1x1 output projection.

  Attributes:
    num_filters: Width of the up-sampled (U1, U2) and residual (E) maps.
    output_filters: Channels of every output level after the 1x1 conv
      (IvaNet: 384); 0 keeps the concatenation.
  """
  num_filters: int = 128
  output_filters: int = 384


@dataclasses.dataclass
class Neck(two_stage.Neck):
  """The single-shot neck: the two-stage ones plus 'ltd'."""
  ltd: LocalTopDown = dataclasses.field(default_factory=LocalTopDown)


@dataclasses.dataclass
class SSDAnchors(hyperparams.Config):
  """SSD prior boxes per level (LTD-SSD / SSD prototxt `PriorBox` params).

  Per location: min size, sqrt(min * max), then for each aspect ratio r the
  boxes r and 1/r, all in input pixels, centred at (i + 0.5) * step.

  Attributes:
    min_sizes: Per level.
    max_sizes: Per level.
    aspect_ratios: Per level, comma-separated, without 1 and without the
      flips (Model Garden configs hold no nested lists).
    steps: Per level, input pixels between neighbouring centres (0: input
      size / feature size).
    clip: Clip priors to the image.
  """
  min_sizes: List[float] = dataclasses.field(
      default_factory=lambda: [30., 60., 111., 162., 213., 264.])
  max_sizes: List[float] = dataclasses.field(
      default_factory=lambda: [60., 111., 162., 213., 264., 315.])
  aspect_ratios: List[str] = dataclasses.field(
      default_factory=lambda: ['2', '2,3', '2,3', '2,3', '2', '2'])
  steps: List[float] = dataclasses.field(
      default_factory=lambda: [8., 16., 32., 64., 100., 300.])
  clip: bool = False


@dataclasses.dataclass
class SSDLoss(hyperparams.Config):
  """SSD's MultiBox loss: softmax CE with hard negative mining plus smooth
  L1 over positives, both divided by the number of positives.

  Attributes:
    neg_pos_ratio: Hard negatives kept per positive.
    box_weight: Weight of the box term.
    variances: Box coder variances (y, x, h, w).
  """
  neg_pos_ratio: float = 3.0
  box_weight: float = 1.0
  variances: List[float] = dataclasses.field(
      default_factory=lambda: [0.1, 0.1, 0.2, 0.2])


@dataclasses.dataclass
class PCMHead(hyperparams.Config):
  """IvaNet's segmentation head (PCM): every level's conv, resized to the
  largest, concatenated, conv3x3 + ReLU, conv3x3 to classes.

  Attributes:
    num_classes: Semantic classes (0 = the model's `num_classes`).
    level_filters: Per-level conv before the resize (BlitzNet: 64; 0: none,
      the raw levels are concatenated).
    level_kernel_size: Its kernel (BlitzNet's default 1; 3 triples the
      head's cost at 300, see configs/ivanet/README.md).
    num_filters: Width of the fused conv3x3.
    loss_weight: W in L_det + W L_seg.
  """
  num_classes: int = 0
  level_filters: int = 64
  level_kernel_size: int = 1
  num_filters: int = 256
  loss_weight: float = 1.0


@dataclasses.dataclass
class SegHead(hyperparams.OneOfConfig):
  """The segmentation head of a single-shot model (None: none)."""
  type: Optional[str] = None
  pcm: PCMHead = dataclasses.field(default_factory=PCMHead)


@dataclasses.dataclass
class SSDDetectionGenerator(hyperparams.Config):
  """SSD inference: softmax scores, per-class top-k, per-class NMS."""
  pre_nms_score_threshold: float = 0.01
  pre_nms_top_k: int = 400
  nms_iou_threshold: float = 0.45
  max_num_detections: int = 200


@dataclasses.dataclass
class DenseHead(retinanet_cfg.RetinaNetHead):
  """The per-level class/box head. 'retinanet' is Model Garden's
  `RetinaNetHead` (num_convs 3x3 convs per branch)."""
  type: str = 'retinanet'
  loss: FocalLoss = dataclasses.field(default_factory=FocalLoss)
  ssd_loss: SSDLoss = dataclasses.field(default_factory=SSDLoss)


# IvaNet (Huang & Wang) parts ------------------------------------------------


@dataclasses.dataclass
class SingleShotModel(retinanet_cfg.RetinaNet):
  """Single-shot model config (Model Garden's `RetinaNet` plus our seams).

  Attributes:
    num_classes: Classes including background (id 0, never predicted); 0
      takes `num_classes` from `train_data.label_map`.
    decoder: The neck, from Model Garden's decoder registry.
    head: The dense head with its loss.
    anchor_targets: Anchor labelling in the parser.
    loss_weight: Multiplies the whole detection loss.
    ssd_anchors: SSD priors ('ssd' dense head).
    ssd_detection_generator: SSD inference ('ssd' dense head).
    seg_head: Segmentation head on the pyramid (IvaNet's PCM).
    size_divisor: Padded input sizes are a multiple of it (0: 2^max_level;
      SSD: 1, a fixed 300 or 512 input).
  """
  num_classes: int = 0
  input_size: List[int] = dataclasses.field(
      default_factory=lambda: [None, None, 3])
  decoder: Neck = dataclasses.field(
      default_factory=lambda: Neck(type='fpn', fpn=decoders.FPN()))
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(
          type='resnet', resnet=backbones.ResNet(model_id=50)))
  head: DenseHead = dataclasses.field(default_factory=DenseHead)
  anchor_targets: AnchorTargets = dataclasses.field(
      default_factory=AnchorTargets)
  loss_weight: float = 1.0
  ssd_anchors: SSDAnchors = dataclasses.field(default_factory=SSDAnchors)
  ssd_detection_generator: SSDDetectionGenerator = dataclasses.field(
      default_factory=SSDDetectionGenerator)
  seg_head: SegHead = dataclasses.field(default_factory=SegHead)
  size_divisor: int = 0
