"""Model configuration of the two-stage (Mask R-CNN family) meta-architecture.

Model Garden's `MaskRCNN` config describes the standard parts (backbone, FPN,
RPN, RoI generator/sampler, 7x7 RoIAlign, box head, mask head, detection
generator, cascade). The fields added here name the part used at each seam;
each name is a builder registered in `tf_mtdet.modeling.registry` (a new neck,
pooler, head or dense auxiliary head is a new module, its registration, and
its typed config as a field of the seam's one-of config here). The targets
the parser makes for this family (RPN anchor labels, mask crops) are
configured here too, beside the parts that learn from them.
"""

import dataclasses
from typing import List, Optional

from official.modeling import hyperparams
from official.vision.configs import backbones
from official.vision.configs import decoders
from official.vision.configs import maskrcnn as maskrcnn_cfg

from tf_mtdet.config import backbones as tf_mtdet_backbones


@dataclasses.dataclass
class BottomUpFPN(hyperparams.Config):
  """SA-FPN paper's BU-FPN (Fig. 2b), or BUF-FPN (Fig. 2c) with fuse_deeper."""
  num_filters: int = 256
  fuse_deeper: bool = False
  use_norm: bool = True


@dataclasses.dataclass
class ScaleAwareFPN(hyperparams.Config):
  """TD-FPN fused with the bottom-up FPN: 'concat' (SA-FPN) or 'add'."""
  num_filters: int = 256
  fusion: str = 'concat'
  fuse_deeper: bool = True
  use_norm: bool = True


@dataclasses.dataclass
class MSFEMFPN(hyperparams.Config):
  """CoMask's MFPN: FPN, then an MSFEM (1, 2 or 4 branches) on every level."""
  num_filters: int = 256
  branches: int = 4
  reduction: int = 4


@dataclasses.dataclass
class PlainFPN(hyperparams.Config):
  """maskrcnn-benchmark's FPN (DATNet): no normalisation, P6 = P5 subsampled."""
  num_filters: int = 256


@dataclasses.dataclass
class Neck(decoders.Decoder):
  """The neck: Model Garden decoders ('fpn', ...) plus ours, picked by `type`.

  Our necks register with Model Garden's decoder registry and add their config
  field here, so `decoders.factory.build_decoder` builds either:
  'bu_fpn' (BU-FPN / BUF-FPN), 'sa_fpn' (SA-FPN / TD-FPN add BUF-FPN),
  'msfem_fpn' (CoMask's MFPN), 'plain_fpn' (no normalisation, P6 = P5
  subsampled: DATNet's maskrcnn-benchmark FPN).
  """
  type: str = 'fpn'
  bu_fpn: BottomUpFPN = dataclasses.field(default_factory=BottomUpFPN)
  sa_fpn: ScaleAwareFPN = dataclasses.field(default_factory=ScaleAwareFPN)
  msfem_fpn: MSFEMFPN = dataclasses.field(default_factory=MSFEMFPN)
  plain_fpn: PlainFPN = dataclasses.field(default_factory=PlainFPN)


@dataclasses.dataclass
class BoxHead(maskrcnn_cfg.DetectionHead):
  """Box head. Default: the papers' '2fc' head (two 1024-d FCs on 7x7 RoIs).

  Attributes:
    type: Builder name; 'fc' is Model Garden's `DetectionHead` (num_convs
      convs then num_fcs FCs, so '4conv1fc' is num_convs=4, num_fcs=1).
    use_norm: 'fc': batch norm after each conv and FC (Model Garden's); off:
      none (maskrcnn-benchmark's, DATNet).
  """
  type: str = 'fc'
  num_convs: int = 0
  num_fcs: int = 2
  fc_dims: int = 1024
  use_norm: bool = True


@dataclasses.dataclass
class RPNHead(maskrcnn_cfg.RPNHead):
  """Model Garden's RPN head config.

  Attributes:
    use_norm: Batch norm after each conv (Model Garden's); off: none
      (maskrcnn-benchmark's, DATNet).
  """
  use_norm: bool = True


@dataclasses.dataclass
class MaskHead(maskrcnn_cfg.MaskHead):
  """Mask head. 'fcn' is Model Garden's `MaskHead` (4 convs + deconv, 28x28)."""
  type: str = 'fcn'


@dataclasses.dataclass
class RoIPooler(maskrcnn_cfg.ROIAligner):
  """RoI pooler. 'level_assigned' is Model Garden's RoIAlign on the FPN level
  the box size assigns (`MultilevelROIAligner`); 'multi_scale_attention' is
  DATNet's MSPwA (every level in `multi_scale_levels`, concatenated, SE with
  max pooling and reduction `attention_reduction`)."""
  type: str = 'level_assigned'
  multi_scale_levels: List[int] = dataclasses.field(
      default_factory=lambda: [2, 5])
  attention_reduction: int = 16


@dataclasses.dataclass
class MaskRoIPooler(maskrcnn_cfg.MaskROIAligner):
  type: str = 'level_assigned'
  multi_scale_levels: List[int] = dataclasses.field(
      default_factory=lambda: [2, 5])
  attention_reduction: int = 16


@dataclasses.dataclass
class EJHead(hyperparams.Config):
  """EJ-Head switches (SA-FPN/EJ-Head Table 4 and 5).

  Attributes:
    interleaving: Train the mask branch on the box head's refined boxes
      re-matched to ground truth (IoU >= interleaving_iou).
    interleaving_iou: Mask positive threshold for interleaving.
    enriched_feature: The box head pools 14x14 RoI features, not 7x7.
    boundary_refinement: Block on the joint RoI pathway shared by the box and
      mask branches: 'none', 'conv1', 'conv2', 'conv3', 'residual'.
    zero_init_refinement: Start the residual block as the identity.
  """
  interleaving: bool = False
  interleaving_iou: float = 0.5
  enriched_feature: bool = False
  boundary_refinement: str = 'none'
  zero_init_refinement: bool = False


@dataclasses.dataclass
class RpnTargets(hyperparams.Config):
  """RPN anchor labelling (Model Garden's `RpnAnchorLabeler`)."""
  match_threshold: float = 0.7
  unmatched_threshold: float = 0.3
  batch_size_per_im: int = 256
  fg_fraction: float = 0.5


@dataclasses.dataclass
class MaskSampler(maskrcnn_cfg.MaskSampler):
  """Mask targets: the parser crops each instance's full-resolution mask to
  `crop_size` around its (outer) box; the sampler resizes those crops to
  `mask_target_size` for the sampled RoIs."""
  crop_size: int = 112


@dataclasses.dataclass
class SemanticHead(hyperparams.Config):
  """Semantic segmentation head on the pyramid.

  Attributes:
    num_classes: Semantic classes (0 = the model's `num_classes`).
    architecture: 'panoptic_fpn' (one conv3x3 + norm + ReLU per level,
      resized to the finest level, 1x1 classifier) or 'datnet' (DATNet Sec.
      3.3: l - min conv3x3 + ReLU + bilinear x2 stages per level, no norm,
      conv3x3 classifier; `modeling.heads.datnet_dense_head`).
    levels: Pyramid levels read, [min, max] (DATNet: [2, 6]).
    num_filters: Width of the per-level branches and of the fused convs.
    num_fused_convs: conv3x3 + ReLU layers after the levels are summed.
    loss_weight: Weight of its pixel loss in the total (0 keeps the head,
      e.g. for fusion, without training it on semantic labels).
    loss: 'cross_entropy', or 'focal' (DATNet's focal-style categorical
      loss, `losses.pixel_focal`).
    focal_gamma: Focal exponent of the 'focal' loss.
    focal_alpha_background: Weight of background pixels in the 'focal' loss
      (other classes weigh 1).
  """
  num_classes: int = 0
  architecture: str = 'panoptic_fpn'
  levels: List[int] = dataclasses.field(default_factory=lambda: [2, 5])
  num_filters: int = 256
  num_fused_convs: int = 2
  loss_weight: float = 0.25
  loss: str = 'cross_entropy'
  focal_gamma: float = 2.0
  focal_alpha_background: float = 0.2


@dataclasses.dataclass
class DistanceTransformHead(hyperparams.Config):
  """DATNet's distance-transform (DT) head: a semantic head's trunk, K =
  len(bin_edges) + 2 classes of binned normalised distance (Sec. 3.1).

  Attributes:
    architecture: The trunk, as `SemanticHead.architecture`.
    levels: Pyramid levels read, [min, max] (the paper: P2-P6); the target
      is made at stride 2**min.
    num_filters: Width of the per-level branches and of the fused convs.
    num_fused_convs: conv3x3 + ReLU layers after the levels are summed.
    bin_edges: Upper edges of the foreground bins but the last ((0, 0.2],
      (0.2, 0.4], > 0.4: K = 4).
    loss_weight: w1 of Eqn. 3.
    focal_gamma: Focal exponent.
    focal_alpha_background: Weight of background pixels (others weigh 1).
  """
  architecture: str = 'datnet'
  levels: List[int] = dataclasses.field(default_factory=lambda: [2, 6])
  num_filters: int = 256
  num_fused_convs: int = 2
  bin_edges: List[float] = dataclasses.field(default_factory=lambda: [0.2, 0.4])
  loss_weight: float = 0.25
  focal_gamma: float = 2.0
  focal_alpha_background: float = 0.2


@dataclasses.dataclass
class DenseAuxHead(hyperparams.OneOfConfig):
  """One dense auxiliary head; `type` names a registered 'dense_aux_head'.

  Its outputs are returned as `<type>/<key>`, its targets and loss are the
  ones its registration names.
  """
  type: Optional[str] = None
  semantic: SemanticHead = dataclasses.field(default_factory=SemanticHead)
  distance_transform: DistanceTransformHead = dataclasses.field(
      default_factory=DistanceTransformHead)


@dataclasses.dataclass
class SumFusion(hyperparams.Config):
  """DATNet's 'sum' fusion (Sec. 3.3).

  Attributes:
    levels: Pyramid levels fused, [min, max] (the paper: P'_2..P'_5); the
      others pass unchanged.
  """
  levels: List[int] = dataclasses.field(default_factory=lambda: [2, 5])


@dataclasses.dataclass
class ConvSumFusion(SumFusion):
  """DATNet's 'sumNconv' fusion (Table 5).

  Attributes:
    num_convs: conv3x3 + ReLU layers after the sum, shared across levels.
    num_filters: Their width (= the pyramid's channels).
  """
  num_convs: int = 2
  num_filters: int = 256


@dataclasses.dataclass
class FeatureFusion(hyperparams.OneOfConfig):
  """How dense auxiliary heads' features go back into the pyramid.

  'sum': P'_l = P_l + resize(F_head) for every head (no weights), on the
  levels in `levels`.
  'sum2conv' / 'sum4conv' (DATNet Table 5): the sum, then 2 / 4 conv3x3 +
  ReLU shared across levels.
  """
  type: Optional[str] = None
  sum: SumFusion = dataclasses.field(default_factory=SumFusion)
  sum2conv: ConvSumFusion = dataclasses.field(
      default_factory=lambda: ConvSumFusion(num_convs=2))
  sum4conv: ConvSumFusion = dataclasses.field(
      default_factory=lambda: ConvSumFusion(num_convs=4))


@dataclasses.dataclass
class Res5(hyperparams.Config):
  """ResNet's res5 stage on pooled RoIs (DATNet's 'res5' box head and trunk).

  Attributes:
    filters: Bottleneck width (outputs 4 x filters channels).
    num_blocks: Bottleneck blocks.
    strides: Stride of the first block.
    cardinality: > 1: ResNeXt blocks, their 3x3 convs in this many groups
      (the res5 of a ResNeXt backbone, e.g. 32 for 32x8d).
    bottleneck_width: ResNeXt blocks' inner width (2048 for 32x8d's res5).
  """
  filters: int = 512
  num_blocks: int = 3
  strides: int = 2
  cardinality: int = 1
  bottleneck_width: int = 0


@dataclasses.dataclass
class RoITrunk(hyperparams.Config):
  """A trunk on the pooled RoIs shared by the box and mask branches (DATNet
  Heavy): both poolers are followed by the same registered 'roi_refinement'
  block `type` ('' : none; 'res5').

  Attributes:
    type: The shared block's registered name.
    share_pooler: The mask branch also uses the box branch's pooler (one
      MSPwA), instead of its own.
  """
  type: str = ''
  share_pooler: bool = True


@dataclasses.dataclass
class CollaborativeHead(hyperparams.Config):
  """CoMask's collaborative head (dense offsets weighted by a coarse mask).

  Attributes:
    num_filters: Width of its conv tower.
    num_convs: conv3x3 layers after the stride-2 conv (paper: 9).
    crop_size: RoIAlign side (14, halved to the 7x7 grid).
    sample_offset: RoIAlign sub-pixel sample offset.
    collaborative: Weight the cells by the coarse mask, in the box and in
      the dense loss (False: the Table 3 'w/o CL' ablation).
    mask_threshold: Cells with coarse-mask confidence above it count.
    max_rois_per_image: Cap on the positive RoIs the head trains on (a
      random subset).
    jitter: Relative jitter of those RoIs (+-).
    final_masks: The head, re-run on the refined box, makes the final masks
      (the paper); False: the model's mask head does, on the refined boxes.
    dense_box_weight: Weight of the per-cell -log IoU.
    coarse_mask_weight: Weight of the coarse mask BCE.
  """
  num_filters: int = 256
  num_convs: int = 9
  crop_size: int = 14
  sample_offset: float = 0.5
  collaborative: bool = True
  mask_threshold: float = 0.5
  max_rois_per_image: int = 96
  jitter: float = 0.15
  final_masks: bool = True
  dense_box_weight: float = 2.0
  coarse_mask_weight: float = 1.0


@dataclasses.dataclass
class RoIBoxRefiner(hyperparams.OneOfConfig):
  """A part refining the box stage's boxes before the mask branch pools
  them; `type` names a registered 'roi_box_refiner' (None: none). A part
  whose config has `final_masks: true` makes `detection_masks` itself: the
  model then has no mask head (`TwoStageModel.mask_head_enabled`)."""
  type: Optional[str] = None
  collaborative: CollaborativeHead = dataclasses.field(
      default_factory=CollaborativeHead)


@dataclasses.dataclass
class TwoStageModel(maskrcnn_cfg.MaskRCNN):
  """Two-stage model config (Model Garden's `MaskRCNN` plus the seams above).

  Attributes:
    num_classes: Classes including background; 0 takes `num_classes` from
      `train_data.label_map`.
    rpn_targets: RPN anchor labelling in the parser.
    dense_aux_heads: Dense auxiliary heads run on the pyramid (their outputs
      join the model outputs, their fused features feed the RPN and RoI heads).
    feature_fusion: How their features are fused into the pyramid (type None:
      not fused).
    ej_head: EJ-Head switches (all off: plain Mask R-CNN heads).
    losses: Model Garden's Mask R-CNN loss weights.
  """
  num_classes: int = 0
  input_size: List[int] = dataclasses.field(
      default_factory=lambda: [None, None, 3])
  decoder: Neck = dataclasses.field(
      default_factory=lambda: Neck(type='fpn', fpn=decoders.FPN()))
  backbone: tf_mtdet_backbones.Backbone = dataclasses.field(
      default_factory=lambda: tf_mtdet_backbones.Backbone(
          type='resnet', resnet=backbones.ResNet(model_id=50)))
  rpn_head: RPNHead = dataclasses.field(default_factory=RPNHead)
  detection_head: BoxHead = dataclasses.field(default_factory=BoxHead)
  mask_head: MaskHead = dataclasses.field(default_factory=MaskHead)
  roi_aligner: RoIPooler = dataclasses.field(default_factory=RoIPooler)
  mask_roi_aligner: MaskRoIPooler = dataclasses.field(
      default_factory=MaskRoIPooler)
  rpn_targets: RpnTargets = dataclasses.field(default_factory=RpnTargets)
  mask_sampler: MaskSampler = dataclasses.field(default_factory=MaskSampler)
  dense_aux_heads: List[DenseAuxHead] = dataclasses.field(default_factory=list)
  feature_fusion: FeatureFusion = dataclasses.field(
      default_factory=FeatureFusion)
  ej_head: EJHead = dataclasses.field(default_factory=EJHead)
  losses: maskrcnn_cfg.Losses = dataclasses.field(
      default_factory=maskrcnn_cfg.Losses)
  res5: Res5 = dataclasses.field(default_factory=Res5)
  roi_trunk: RoITrunk = dataclasses.field(default_factory=RoITrunk)
  roi_box_refiner: RoIBoxRefiner = dataclasses.field(
      default_factory=RoIBoxRefiner)

  def mask_head_enabled(self) -> bool:
    """The model builds a mask head (and trains the `mask` term): masks are
    on and no roi_box_refiner makes the final masks itself."""
    refiner = self.roi_box_refiner.get() if self.roi_box_refiner.type else None
    return self.include_mask and not getattr(refiner, 'final_masks', False)

  def check_levels(self, prefix: str) -> None:
    """Raises ValueError naming a part that reads a level the pyramid lacks.

    Args:
      prefix: The config path of this model, e.g. 'model.two_stage'.
    """
    # A registered head without `levels` reads no fixed range.
    reads = [(f'dense_aux_heads[{i}].{head.type}.levels',
              getattr(head.get(), 'levels', None))
             for i, head in enumerate(self.dense_aux_heads) if head.type]
    reads = [(field, levels) for field, levels in reads if levels is not None]
    for name in ('roi_aligner', 'mask_roi_aligner'):
      pooler = getattr(self, name)
      if pooler.type == 'multi_scale_attention':
        reads.append((f'{name}.multi_scale_levels',
                      pooler.multi_scale_levels))
    for field, levels in reads:
      if len(levels) != 2 or levels[0] > levels[1]:
        raise ValueError(f'{prefix}.{field} is {list(levels)}: expected '
                         '[first level, last level]')
      if levels[0] < self.min_level or levels[1] > self.max_level:
        raise ValueError(
            f'{prefix}.{field} is {list(levels)}, outside the pyramid\'s '
            f'levels [{self.min_level}, {self.max_level}] (min_level, '
            'max_level)')
