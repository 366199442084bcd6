"""Input pipeline configuration.

Built on Model Garden's config dataclasses so YAML loading and `key=value`
overrides work as in Model Garden.
"""

import dataclasses
from typing import List

from official.core import config_definitions as cfg
from official.vision.configs import common
from official.modeling import hyperparams


@dataclasses.dataclass
class Augmentation(hyperparams.Config):
  """The shared augmentation every family's parser runs before its targets.

  What is parsed besides boxes (instance masks, the semantic map) follows
  from the model: a family asks for what its parts' targets need.

  Attributes:
    resize_mode: 'fixed': fit the image into `output_size` (Model Garden's
      behaviour); 'short_side': scale the short side to `short_side` unless the
      long side would exceed `long_side` (the papers' 800/1333 rule).
    output_size: [height, width] for 'fixed'.
    short_side: Short-side lengths for 'short_side'. With several values, one
      is drawn per training image (multi-scale training); evaluation uses the
      largest.
    long_side: Long-side cap for 'short_side'.
    aug_rand_hflip: Random horizontal flip in training.
    aug_rand_vflip: Random vertical flip in training.
    aug_scale_min: Scale jitter lower bound (training).
    aug_scale_max: Scale jitter upper bound (training).
    max_num_instances: Ground-truth instances kept per image.
    skip_crowd_during_training: Drop crowd objects in training.
    skip_difficult_during_training: Drop VOC `difficult` objects in training.
    semantic_ignore_label: Label of padding pixels in `gt_semantic`.
    semantic_eval_max_size: [H, W] the evaluation's original-resolution
      semantic maps are padded to (so they batch; mIoU is scored there): at
      least the largest evaluated image (VOC 500, COCO 640).
    dtype: Image dtype fed to the model.
    ssd_augmentation: SSD's augmentation before the resize (training):
      photometric distortion, zoom-out up to `max_zoom_out` x, IoU-
      constrained random crop (`tf_mtdet.data.ssd_augment`).
    max_zoom_out: Largest zoom-out ratio (1: none).
    photometric_distortion: Brightness/contrast/saturation/hue jitter in
      `ssd_augmentation`.
    color_jitter: Random colour jitter in training: brightness, contrast and
      saturation factors drawn from [1 - x, 1 + x] (torchvision's
      `ColorJitter(x, x, x)`, Model Garden's `preprocess_ops.color_jitter`);
      0: off.
  """
  resize_mode: str = 'fixed'
  output_size: List[int] = dataclasses.field(default_factory=lambda: [512, 512])
  short_side: List[int] = dataclasses.field(default_factory=lambda: [800])
  long_side: int = 1333
  aug_rand_hflip: bool = True
  aug_rand_vflip: bool = False
  aug_scale_min: float = 1.0
  aug_scale_max: float = 1.0
  max_num_instances: int = 100
  skip_crowd_during_training: bool = True
  skip_difficult_during_training: bool = True
  semantic_ignore_label: int = 255
  semantic_eval_max_size: List[int] = dataclasses.field(
      default_factory=lambda: [640, 640])
  dtype: str = 'float32'
  ssd_augmentation: bool = False
  max_zoom_out: float = 4.0
  photometric_distortion: bool = True
  color_jitter: float = 0.0

  def __post_init__(self, *args, **kwargs):
    super().__post_init__(*args, **kwargs)
    if self.color_jitter < 0:
      raise ValueError(f'color_jitter must be >= 0, got {self.color_jitter}')
    if self.resize_mode not in ('fixed', 'short_side'):
      raise ValueError(
          f"resize_mode must be 'fixed' or 'short_side', got {self.resize_mode!r}")


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
  """One dataset split: Model Garden's `DataConfig` plus our parser.

  Attributes:
    parser: The shared augmentation (the family adds its targets).
    annotation_file: COCO ground truth of the split (the builder's
      `PREFIX-annotations.json`), for evaluation.
    label_map: The builder's `PREFIX-label_map.json`: class names for export
      and, when the model's `num_classes` is 0, the class count.
    metrics: Evaluators (`tf_mtdet.evaluation.metrics.METRICS`): 'coco',
      'proposal_recall', 'voc', 'voc07', 'miou'; empty: COCO AP.
  """
  input_path: str = ''
  global_batch_size: int = 2
  is_training: bool = True
  shuffle_buffer_size: int = 256
  decoder: common.DataDecoder = dataclasses.field(
      default_factory=common.DataDecoder)
  parser: Augmentation = dataclasses.field(default_factory=Augmentation)
  annotation_file: str = ''
  label_map: str = ''
  metrics: List[str] = dataclasses.field(default_factory=list)
  file_type: str = 'tfrecord'
