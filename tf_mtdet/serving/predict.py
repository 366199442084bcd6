"""One image file through an exported SavedModel; picture and JSON out.

`predict_image` sends the file's bytes to the `image_bytes` signature, so it
sees exactly what a TF Serving client sending the same file would get. An
image declaring more than `max_image_pixels` pixels is refused from its
header first, before anything (the model or PIL) decodes it.
"""

import json
import os
import tempfile
from typing import Any, Dict, Optional, Union

import numpy as np
from PIL import Image
from pycocotools import mask as mask_api

from tf_mtdet.data import image_size
from tf_mtdet.serving import visualize

DEFAULT_MAX_IMAGE_PIXELS = image_size.DEFAULT_MAX_IMAGE_PIXELS


class PredictError(ValueError):
  """A bad input file or SavedModel; the message names it."""


def _read_bytes(image_path: str) -> bytes:
  try:
    with open(image_path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise PredictError(f'{image_path}: cannot read image: '
                       f'{e.strerror or e}') from e


def _check_size(image_path: str, encoded: bytes,
                max_image_pixels: Optional[int]) -> None:
  try:
    image_size.check_image_size(encoded, max_image_pixels, image_path,
                                field='--max-image-pixels')
  except image_size.ImageTooLargeError as e:
    raise PredictError(str(e)) from e


def read_image(image_path: str,
               max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS
               ) -> np.ndarray:
  """[H, W, 3] uint8 RGB pixels of an image file (first frame).

  Raises:
    PredictError: missing, unreadable or non-image file, or one declaring
      more than `max_image_pixels` pixels (None or 0: no limit).
  """
  # The OS error message, not PIL's; the size before PIL decodes anything.
  _check_size(image_path, _read_bytes(image_path), max_image_pixels)
  try:
    with Image.open(image_path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise PredictError(f'{image_path}: not a readable image: {e}') from e


def predict_image(export_dir: Union[str, Any],
                  image_path: str,
                  score_threshold: float = 0.3,
                  max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS
                  ) -> Dict[str, Any]:
  """Detections for one image file.

  Args:
    export_dir: The model's base directory (latest version), a version
      directory, or a SavedModel already loaded with `adapters.load` (to
      predict many images without reloading).
    image_path: JPEG, PNG, GIF or BMP file.
    score_threshold: Detections scoring below it are dropped.
    max_image_pixels: Images declaring more pixels (width x height) are
      refused before decoding; None or 0: no limit. The exported model has
      its own limit (`export.max_image_pixels`) too.

  Returns:
    `image_size` (height, width); `boxes` [n, 4] float32 ymin, xmin, ymax,
    xmax in original pixels; `scores` [n]; `classes` [n] int32;
    `class_names` list of n str; with a mask head `masks` [n, mh, mw]
    per-box probabilities, and `full_masks` [n, height, width] uint8 if the
    model was exported with full-image masks; with a segmentation head
    `semantic_map` [height, width] uint8 class ids. Sorted by score, best
    first.

  Raises:
    PredictError: missing, unreadable, non-image or too large file, or no
      SavedModel.
  """
  # Imported here: TensorFlow is slow to import and only needed to predict.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_mtdet.serving import adapters  # pylint: disable=g-import-not-at-top

  encoded = _read_bytes(image_path)
  _check_size(image_path, encoded, max_image_pixels)
  loaded = export_dir
  if isinstance(export_dir, (str, os.PathLike)):
    try:
      loaded = adapters.load(os.fspath(export_dir))
    except (FileNotFoundError, OSError) as e:
      raise PredictError(str(e)) from e
  if 'image_bytes' not in loaded.signatures:
    raise PredictError(f'{export_dir}: the SavedModel has no image_bytes '
                       'signature')
  try:
    outputs = loaded.signatures['image_bytes'](inputs=tf.constant([encoded]))
  except tf.errors.InvalidArgumentError as e:
    summary = adapters.error_summary(e.message)
    if 'image declares' in summary:  # The model's own size limit.
      raise PredictError(f'{image_path}: the model refused it: '
                         f'{summary}') from e
    raise PredictError(f'{image_path}: not a readable JPEG, PNG, GIF or BMP '
                       f'image ({summary})') from e
  outputs = {k: v.numpy()[0] for k, v in outputs.items()}
  n = int(outputs['num_detections'])
  keep = np.flatnonzero(outputs['detection_scores'][:n] >= score_threshold)
  height, width = (round(float(v)) for v in outputs['image_info'][0])
  result = {
      'image_size': (height, width),
      'boxes': outputs['detection_boxes'][keep],
      'scores': outputs['detection_scores'][keep],
      'classes': outputs['detection_classes'][keep].astype(np.int32),
      'class_names': [b.decode('utf-8') for b in
                      outputs['detection_class_names'][keep]],
  }
  if 'detection_masks' in outputs:
    result['masks'] = outputs['detection_masks'][keep]
  if 'detection_full_masks' in outputs:
    result['full_masks'] = outputs['detection_full_masks'][
        keep, :height, :width]
  if 'semantic_map' in outputs:
    result['semantic_map'] = outputs['semantic_map'][:height, :width]
  return result


def _write_atomic(path: str, data: bytes) -> None:
  """Writes to a temporary file beside `path`, then renames it into place."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                             suffix='.tmp', dir=directory)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def detections_to_json(detections: Dict[str, Any],
                       image_path: Optional[str] = None) -> Dict[str, Any]:
  """A JSON-ready dict: image size and, per detection, box, score, class,
  name and (with masks) the full-image mask as COCO RLE (`counts` a str)."""
  height, width = detections['image_size']
  masks = visualize.full_image_masks(detections, height, width)
  items = []
  for i, box in enumerate(np.asarray(detections['boxes']).reshape(-1, 4)):
    item = {
        'box': [float(v) for v in box],
        'score': float(detections['scores'][i]),
        'class_id': int(detections['classes'][i]),
        'class_name': str(detections['class_names'][i]),
    }
    if masks is not None:
      rle = mask_api.encode(np.asfortranarray(masks[i].astype(np.uint8)))
      item['mask'] = {'size': [int(s) for s in rle['size']],
                      'counts': rle['counts'].decode('ascii')}
    items.append(item)
  result = {'height': int(height), 'width': int(width), 'detections': items}
  if image_path is not None:
    result = {'image': image_path, **result}
  return result


def write_prediction(image_path: str,
                     detections: Dict[str, Any],
                     out_png: str,
                     out_json: Optional[str] = None,
                     max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS
                     ) -> None:
  """Writes the image with detections drawn, and optionally a JSON.

  Both files are written to a temporary file and renamed, so a reader never
  sees a partial file.

  Args:
    image_path: The image the detections are for.
    detections: From `predict_image`.
    out_png: The picture (PNG).
    out_json: Optional JSON: `image`, `height`, `width`, `detections` (`box`
      [ymin, xmin, ymax, xmax] original pixels, `score`, `class_id`,
      `class_name`, `mask` COCO RLE {size, counts}).
    max_image_pixels: As for `predict_image`.

  Raises:
    PredictError: unreadable image, or one whose size differs from the
      detections'.
  """
  import cv2  # pylint: disable=g-import-not-at-top

  image = read_image(image_path, max_image_pixels)
  if tuple(image.shape[:2]) != tuple(detections['image_size']):
    raise PredictError(
        f'{image_path}: image is {image.shape[0]}x{image.shape[1]} but the '
        f'detections are for {detections["image_size"][0]}x'
        f'{detections["image_size"][1]}')
  if 'semantic_map' in detections:
    # The translucent class overlay under the boxes.
    image = visualize.draw_semantic(image, detections['semantic_map'])
  drawn = visualize.draw_detections(image, detections)
  ok, png = cv2.imencode('.png', cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
  if not ok:
    raise PredictError(f'{out_png}: PNG encoding failed')
  _write_atomic(out_png, png.tobytes())
  if out_json:
    _write_atomic(out_json, json.dumps(
        detections_to_json(detections, image_path), indent=1).encode('utf-8'))
