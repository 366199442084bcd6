"""Checks shared by the readers: boxes and segmentations against their image."""

import math
from typing import Any, Optional, Union

# Boxes that overshoot the image by less than this many pixels (float rounding in
# COCO exports) are clipped; anything further out is an error.
BOX_TOLERANCE_PX = 1.0

Box = tuple[float, float, float, float]


def check_box(bbox: Any, width: int, height: int) -> Union[Box, str]:
  """Validates a COCO `[x, y, w, h]` box against its image.

  Args:
    bbox: The box as read from the source.
    width: Image width in pixels.
    height: Image height in pixels.

  Returns:
    The box clipped to the image, or a string explaining why it is invalid. The
    string starts with the problem reason ('degenerate_box', 'box_out_of_image',
    'invalid_annotation').
  """
  if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
    return f'invalid_annotation: bbox {bbox!r} is not [x, y, w, h]'
  try:
    x, y, w, h = (float(v) for v in bbox)
  except (TypeError, ValueError):
    return f'invalid_annotation: bbox {bbox!r} has non-numeric values'
  if not all(math.isfinite(v) for v in (x, y, w, h)):
    return f'degenerate_box: bbox {bbox!r} is not finite'
  if w <= 0 or h <= 0:
    return f'degenerate_box: bbox {bbox!r} has width or height <= 0'
  tol = BOX_TOLERANCE_PX
  if (x < -tol or y < -tol or x + w > width + tol or y + h > height + tol):
    return (f'box_out_of_image: bbox {bbox!r} exceeds the {width}x{height} '
            'image')
  x0, y0 = max(x, 0.0), max(y, 0.0)
  x1, y1 = min(x + w, float(width)), min(y + h, float(height))
  if x1 - x0 <= 0 or y1 - y0 <= 0:
    return f'degenerate_box: bbox {bbox!r} is empty once clipped to the image'
  return (x0, y0, x1 - x0, y1 - y0)


def check_segmentation(segmentation: Any, width: int,
                       height: int) -> Optional[str]:
  """Validates a COCO segmentation (polygons or RLE); None if it is usable.

  Returns:
    None, or a string '<reason>: <detail>' with reason 'polygon_under_3_points',
    'missing_segmentation' or 'invalid_segmentation'.
  """
  if segmentation is None or (isinstance(segmentation, list) and
                              not segmentation):
    return 'missing_segmentation: annotation has no segmentation'
  if isinstance(segmentation, list):
    for i, polygon in enumerate(segmentation):
      if not isinstance(polygon, (list, tuple)) or len(polygon) % 2:
        return (f'invalid_segmentation: polygon {i} is not a flat list of x, y '
                'pairs')
      if len(polygon) < 6:
        return (f'polygon_under_3_points: polygon {i} has {len(polygon) // 2} '
                'points')
      try:
        if not all(math.isfinite(float(v)) for v in polygon):
          return f'invalid_segmentation: polygon {i} is not finite'
      except (TypeError, ValueError):
        return f'invalid_segmentation: polygon {i} has non-numeric values'
    return None
  if isinstance(segmentation, dict):
    size, counts = segmentation.get('size'), segmentation.get('counts')
    if not isinstance(size, (list, tuple)) or len(size) != 2 or counts is None:
      return 'invalid_segmentation: RLE needs "size" [h, w] and "counts"'
    if [int(size[0]), int(size[1])] != [height, width]:
      return (f'invalid_segmentation: RLE size {list(size)} differs from the '
              f'image size [{height}, {width}]')
    if isinstance(counts, list) and sum(int(c) for c in counts) != height * width:
      return 'invalid_segmentation: RLE counts do not sum to height * width'
    return None
  return f'invalid_segmentation: unsupported type {type(segmentation).__name__}'


def split_reason(message: str) -> tuple[str, str]:
  reason, _, detail = message.partition(': ')
  return reason, detail
