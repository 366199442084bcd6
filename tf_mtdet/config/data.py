"""Input pipeline configuration.

Built on Model Garden's config dataclasses so YAML loading and `key=value`
overrides work as in Model Garden.
"""

import dataclasses
from typing import List

from official.core import config_definitions as cfg
from official.vision.configs import common
from official.vision.configs import maskrcnn as maskrcnn_cfg


@dataclasses.dataclass
class TwoStageParser(maskrcnn_cfg.Parser):
  """Model Garden's Mask R-CNN parser config plus resizing and semantic options.

  Attributes:
    resize_mode: 'fixed': fit the image into `output_size` (Model Garden's
      behaviour); 'short_side': scale the short side to `short_side` unless the
      long side would exceed `long_side` (the papers' 800/1333 rule).
    output_size: [height, width] for 'fixed'.
    short_side: Short-side lengths for 'short_side'. With several values, one
      is drawn per training image (multi-scale training); evaluation uses the
      largest.
    long_side: Long-side cap for 'short_side'.
    include_mask: Parse instance masks.
    include_semantic: Parse the per-image semantic PNG into `gt_semantic`.
    semantic_ignore_label: Label of padding pixels in `gt_semantic`.
    skip_difficult_during_training: Drop VOC `difficult` objects in training.
    dtype: Image dtype fed to the model.
  """
  resize_mode: str = 'fixed'
  output_size: List[int] = dataclasses.field(default_factory=lambda: [512, 512])
  short_side: List[int] = dataclasses.field(default_factory=lambda: [800])
  long_side: int = 1333
  aug_rand_hflip: bool = True
  include_mask: bool = True
  include_semantic: bool = False
  semantic_ignore_label: int = 255
  skip_difficult_during_training: bool = True
  dtype: str = 'float32'

  def __post_init__(self, *args, **kwargs):
    super().__post_init__(*args, **kwargs)
    if self.resize_mode not in ('fixed', 'short_side'):
      raise ValueError(
          f"resize_mode must be 'fixed' or 'short_side', got {self.resize_mode!r}")


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
  """One dataset split: Model Garden's `DataConfig` plus our parser.

  Attributes:
    annotation_file: COCO ground truth of the split (the builder's
      `PREFIX-annotations.json`), for evaluation.
  """
  input_path: str = ''
  global_batch_size: int = 2
  is_training: bool = True
  shuffle_buffer_size: int = 256
  decoder: common.DataDecoder = dataclasses.field(
      default_factory=common.DataDecoder)
  parser: TwoStageParser = dataclasses.field(default_factory=TwoStageParser)
  annotation_file: str = ''
  file_type: str = 'tfrecord'


@dataclasses.dataclass
class AnchorConfig(maskrcnn_cfg.Anchor):
  """Anchors of the RPN, and the pyramid levels they live on."""
  min_level: int = 2
  max_level: int = 6

