"""Source-independent description of a dataset, and the bad-input bookkeeping.

Readers (`coco.py`, `voc.py`) turn a source into `DatasetSource`; the writer turns
that into TFRecord shards. Everything in here is plain Python so worker
processes can receive it cheaply.
"""

import collections
import dataclasses
import sys
from typing import Any, Optional


@dataclasses.dataclass
class Instance:
  """One object of an image.

  Attributes:
    annotation_id: Id of the annotation in the source (COCO `id`).
    category_id: Category id as in the label map.
    bbox: `[x, y, width, height]` in pixels of the original image (COCO).
    area: Area in pixels (segmentation area when known, else box area).
    is_crowd: COCO `iscrowd`.
    segmentation: COCO polygons (list of flat lists), an RLE dict, or None.
    difficult: Pascal VOC `difficult` flag.
  """
  annotation_id: int
  category_id: int
  bbox: tuple[float, float, float, float]
  area: float
  is_crowd: bool = False
  segmentation: Any = None
  difficult: bool = False


@dataclasses.dataclass
class ImageRecord:
  """One image and its instances.

  Attributes:
    image_id: Integer image id (written as `image/source_id`).
    file_name: Name relative to the image directory (written as `image/filename`).
    path: Absolute or working-directory-relative path to read the bytes from.
    height: Height in pixels as the annotations state it (0 if unknown).
    width: Width in pixels as the annotations state it (0 if unknown).
    instances: Objects in source order (painting order for semantic maps).
    source_entry: The source's own image entry, copied into the GT JSON.
    semantic_path: Its semantic label file (VOC SegmentationClass PNG, SBD
      .mat), with `EncodeOptions.semantic_files`.
  """
  image_id: int
  file_name: str
  path: str
  height: int
  width: int
  instances: list[Instance] = dataclasses.field(default_factory=list)
  source_entry: Optional[dict[str, Any]] = None
  semantic_path: Optional[str] = None


@dataclasses.dataclass
class Category:
  id: int
  name: str
  supercategory: str = ''


@dataclasses.dataclass
class DatasetSource:
  """What a reader hands to the writer."""
  images: list[ImageRecord]
  categories: list[Category]
  description: dict[str, Any]


class BuildError(Exception):
  """Bad input in strict mode, or an input that cannot be built at all."""


@dataclasses.dataclass(frozen=True)
class Problem:
  """A bad input item.

  Attributes:
    reason: Short machine-readable reason, the key in the summary's `skipped`.
    where: The file and record it concerns, e.g. `instances.json: annotation id 7`.
    detail: Human-readable detail.
    kind: 'image' when a whole image is dropped, 'annotation' when one object is.
  """
  reason: str
  where: str
  detail: str
  kind: str = 'annotation'

  def message(self) -> str:
    return f'{self.where}: {self.detail} [{self.reason}]'


class ProblemLog:
  """Collects problems: raises at the first one in strict mode, else counts them.

  Every skipped item is named on stderr so nothing is lost silently.
  """

  def __init__(self, strict: bool, stream=None):
    self.strict = strict
    self._stream = stream if stream is not None else sys.stderr
    self.counts: collections.Counter[str] = collections.Counter()
    self.problems: list[Problem] = []
    self.annotations_dropped_with_images = 0

  def report(self, problem: Problem, dropped_annotations: int = 0) -> None:
    if self.strict:
      raise BuildError(problem.message())
    self.counts[problem.reason] += 1
    self.problems.append(problem)
    self.annotations_dropped_with_images += dropped_annotations
    print(f'skipped {problem.kind}: {problem.message()}', file=self._stream,
          flush=True)

  def summary(self) -> dict[str, Any]:
    return {
        'skipped': dict(sorted(self.counts.items())),
        'skipped_total': sum(self.counts.values()),
        'annotations_dropped_with_skipped_images':
            self.annotations_dropped_with_images,
    }
