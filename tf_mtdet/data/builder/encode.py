"""Turns one `ImageRecord` into a serialized `tf.train.Example`.

Feature keys are those of Model Garden's `create_coco_tf_record` (masks as
per-instance PNG), so `official.vision.dataloaders.tf_example_decoder.
TfExampleDecoder(include_mask=True)` decodes the shards. Additions: the
per-image semantic class PNG under `image/segmentation/class/encoded` (the key
Model Garden's segmentation decoder reads) and the VOC `difficult` flag under
Model Garden's attribute key `image/object/attribute/difficult`, so
`TfExampleDecoder(attribute_names=['difficult'])` reads it.

Runs in worker processes: no TensorFlow ops, only protobuf, numpy, PIL and
pycocotools.
"""

import dataclasses
import hashlib
import io
from typing import Any, Optional, Union

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tensorflow.core.example import example_pb2
from tensorflow.core.example import feature_pb2

from tf_mtdet.data import image_size
from tf_mtdet.data.builder import png
from tf_mtdet.data.builder import records
from tf_mtdet.data.builder import voc_segmentation

_PASS_THROUGH_FORMATS = {'JPEG': b'jpeg', 'PNG': b'png'}


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
  """What to write besides image and boxes.

  Attributes:
    include_masks: Write `image/object/mask` (one PNG per instance).
    semantic: Write `image/segmentation/class/encoded`: category ids painted
      from the instance masks in source order (later over earlier), crowd
      included, 0 elsewhere.
    box_masks: Instances without a segmentation are masked by their box.
    category_names: Category id -> name, for `image/object/class/text`.
    max_image_pixels: Images declaring more pixels (width x height, read from
      the header before decoding) are skipped as `image_too_large`; 0 for no
      limit.
    semantic_files: Write `image/segmentation/class/encoded` from each
      image's `semantic_path` (VOC PNG / SBD .mat, 255 kept); images without
      one get an all-255 (ignore) map.
  """
  include_masks: bool = False
  semantic: bool = False
  box_masks: bool = False
  category_names: Optional[dict[int, str]] = None
  max_image_pixels: int = image_size.DEFAULT_MAX_IMAGE_PIXELS
  semantic_files: bool = False

  @property
  def needs_masks(self) -> bool:
    return self.include_masks or self.semantic


@dataclasses.dataclass
class EncodedImage:
  """A written image: the serialized example and its COCO ground truth."""
  serialized: bytes
  gt_image: dict[str, Any]
  gt_annotations: list[dict[str, Any]]
  num_crowd: int
  semantic_missing: bool = False


def _bytes(values: list[bytes]) -> feature_pb2.Feature:
  return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=values))


def _ints(values) -> feature_pb2.Feature:
  return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))


def _floats(values) -> feature_pb2.Feature:
  return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))


def box_mask(bbox: tuple[float, float, float, float], height: int,
             width: int) -> np.ndarray:
  """Fills a box as a [height, width] uint8 mask: pixels whose centre is inside.

  A box thinner than a pixel still covers the pixel it lies in, so every valid
  box yields a non-empty mask.
  """
  x, y, w, h = bbox
  x0, y0 = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
  x1, y1 = int(np.floor(x + w + 0.5)), int(np.floor(y + h + 0.5))
  x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
  x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
  mask = np.zeros((height, width), np.uint8)
  mask[y0:y1, x0:x1] = 1
  return mask


def instance_mask(instance: records.Instance, height: int,
                  width: int) -> np.ndarray:
  """Full-image [height, width] uint8 0/1 mask, as pycocotools' `annToMask`."""
  seg = instance.segmentation
  if seg is None:
    return box_mask(instance.bbox, height, width)
  if isinstance(seg, list):
    rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
  elif isinstance(seg['counts'], list):
    rle = mask_utils.frPyObjects(seg, height, width)
  else:
    counts = seg['counts']
    rle = {'size': seg['size'],
           'counts': counts.encode('ascii') if isinstance(counts, str) else counts}
  return mask_utils.decode(rle)


def _box_polygon(bbox) -> list[list[float]]:
  x, y, w, h = bbox
  return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _too_large(record: records.ImageRecord, size: image_size.ImageSize,
               limit: int) -> records.Problem:
  return records.Problem(
      'image_too_large', record.path,
      image_size.too_large_message(size, limit, '--max-image-pixels'),
      'image')


def _read_image(record: records.ImageRecord, max_image_pixels: int = 0
                ) -> Union[tuple[bytes, bytes], records.Problem]:
  """Reads and fully checks an image; returns (bytes, format) or a Problem.

  An image declaring more than `max_image_pixels` pixels is refused from its
  header, before anything is decoded.
  """
  try:
    with open(record.path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    return records.Problem('missing_image_file', record.path,
                           'file does not exist', 'image')
  except OSError as e:
    return records.Problem('missing_image_file', record.path,
                           f'cannot read: {e.strerror or e}', 'image')
  try:
    image_size.check_image_size(data, max_image_pixels, record.path)
  except image_size.ImageTooLargeError:
    return _too_large(record, image_size.read_image_size(data),
                      max_image_pixels)
  try:
    with Image.open(io.BytesIO(data)) as im:
      size, fmt = im.size, im.format
      if max_image_pixels and size[0] * size[1] > max_image_pixels:
        # A format whose header only PIL reads (TIFF, WebP, ...).
        return _too_large(record, image_size.ImageSize(
            str(fmt).lower(), size[1], size[0], size[0] * size[1]),
                          max_image_pixels)
      if fmt == 'JPEG':
        # Decoding at 1/8 scale still reads every entropy-coded block, so a
        # truncated or corrupt file fails here, at a fraction of the cost.
        im.draft(im.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
      im.load()
      if fmt not in _PASS_THROUGH_FORMATS:
        out = io.BytesIO()
        im.convert('RGB').save(out, format='PNG')
        data, fmt = out.getvalue(), 'PNG'
  except (OSError, ValueError, Image.DecompressionBombError,
          SyntaxError) as e:
    return records.Problem('corrupt_image_file', record.path,
                           f'cannot decode image: {e}', 'image')
  if size != (record.width, record.height):
    return records.Problem(
        'image_size_mismatch', record.path,
        f'image is {size[0]}x{size[1]} (w x h) but the annotations say '
        f'{record.width}x{record.height}', 'image')
  return data, _PASS_THROUGH_FORMATS[fmt]


def encode_image(record: records.ImageRecord,
                 options: EncodeOptions) -> Union[EncodedImage, records.Problem]:
  """Encodes one image with its instances.

  Args:
    record: The image; its boxes are already checked and clipped.
    options: What to write.

  Returns:
    The encoded example and ground truth, or the Problem that makes the image
    unusable (missing, corrupt, size differs from the annotations).
  """
  read = _read_image(record, options.max_image_pixels)
  if isinstance(read, records.Problem):
    return read
  data, fmt = read
  h, w = record.height, record.width
  names = options.category_names or {}
  instances = record.instances

  feature = {
      'image/encoded': _bytes([data]),
      'image/format': _bytes([fmt]),
      'image/height': _ints([h]),
      'image/width': _ints([w]),
      'image/filename': _bytes([record.file_name.encode('utf8')]),
      'image/source_id': _bytes([str(record.image_id).encode('utf8')]),
      'image/key/sha256': _bytes(
          [hashlib.sha256(data).hexdigest().encode('utf8')]),
      'image/object/bbox/xmin': _floats([i.bbox[0] / w for i in instances]),
      'image/object/bbox/xmax': _floats(
          [(i.bbox[0] + i.bbox[2]) / w for i in instances]),
      'image/object/bbox/ymin': _floats([i.bbox[1] / h for i in instances]),
      'image/object/bbox/ymax': _floats(
          [(i.bbox[1] + i.bbox[3]) / h for i in instances]),
      'image/object/class/label': _ints([i.category_id for i in instances]),
      'image/object/class/text': _bytes(
          [names.get(i.category_id, '').encode('utf8') for i in instances]),
      'image/object/is_crowd': _ints([int(i.is_crowd) for i in instances]),
      'image/object/attribute/difficult': _ints(
          [int(i.difficult) for i in instances]),
      'image/object/area': _floats([i.area for i in instances]),
  }
  if options.needs_masks:
    masks = [instance_mask(i, h, w) for i in instances]
    if options.include_masks:
      feature['image/object/mask'] = _bytes(
          [png.encode_binary_mask(m) for m in masks])
    if options.semantic:
      labels = np.zeros((h, w), np.uint8)
      for instance, m in zip(instances, masks):
        labels[m > 0] = instance.category_id
      feature['image/segmentation/class/encoded'] = _bytes(
          [png.encode_label_map(labels)])
  semantic_missing = False
  if options.semantic_files:
    if record.semantic_path is None:
      # No label for this image: every pixel ignored, counted in the summary.
      labels, semantic_missing = np.full((h, w), 255, np.uint8), True
    else:
      try:
        labels = voc_segmentation.read_label_file(record.semantic_path)
      except records.BuildError as e:
        return records.Problem('invalid_segmentation_file',
                               record.semantic_path, str(e), 'image')
      if labels.shape != (h, w):
        return records.Problem(
            'invalid_segmentation_file', record.semantic_path,
            f'label map is {labels.shape[1]}x{labels.shape[0]} (w x h) but '
            f'the image is {w}x{h}', 'image')
    feature['image/segmentation/class/encoded'] = _bytes(
        [png.encode_label_map(labels)])

  example = example_pb2.Example(
      features=feature_pb2.Features(feature=feature))
  gt_image = dict(record.source_entry or {})
  gt_image.update(id=record.image_id, file_name=record.file_name, height=h,
                  width=w)
  gt_annotations = []
  for i in instances:
    seg = i.segmentation
    if seg is None:
      seg = _box_polygon(i.bbox)
    ann = {'id': i.annotation_id, 'image_id': record.image_id,
           'category_id': i.category_id, 'bbox': [float(v) for v in i.bbox],
           'area': float(i.area), 'iscrowd': int(i.is_crowd),
           'segmentation': seg}
    if i.difficult:
      ann['difficult'] = 1
    gt_annotations.append(ann)
  return EncodedImage(
      serialized=example.SerializeToString(deterministic=True),
      gt_image=gt_image, gt_annotations=gt_annotations,
      num_crowd=sum(int(i.is_crowd) for i in instances),
      semantic_missing=semantic_missing)

