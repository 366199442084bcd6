"""Images through an exported model; pictures and JSON out.

`predict_image` sends an image file's bytes to a SavedModel's `image_bytes`
signature (`SavedModelRunner`), so it sees exactly what a TF Serving client
sending the same file would get, or runs a TFLite export with the LiteRT
interpreter (`tflite.TFLiteRunner`), which returns the same outputs. An
image declaring more than `max_image_pixels` pixels is refused from its
header first, before anything (the model or PIL) decodes it.
`predict_files` runs a folder or glob (`list_images`): a picture per image
and one COCO results list (`coco_results`), nothing partial on failure."""

import glob
import io
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence, TextIO, Union

import numpy as np
from PIL import Image
from pycocotools import mask as mask_api

from tf_mtdet.data import image_size
from tf_mtdet.serving import visualize

DEFAULT_MAX_IMAGE_PIXELS = image_size.DEFAULT_MAX_IMAGE_PIXELS
# What a folder given to `list_images` is searched for.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')


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


def decode_image(image_path: str, encoded: bytes) -> np.ndarray:
  """[H, W, 3] uint8 RGB pixels (first frame) of an image file's bytes.

  Raises:
    PredictError: not an image PIL reads.
  """
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise PredictError(f'{image_path}: not a readable image: {e}') from e


def read_image(image_path: str,
               max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS
               ) -> np.ndarray:
  """[H, W, 3] uint8 RGB pixels of an image file (first frame).

  Raises:
    PredictError: missing, unreadable or non-image file, or one declaring
      more than `max_image_pixels` pixels (None or 0: no limit).
  """
  # The OS error message, not PIL's; the size before PIL decodes anything.
  encoded = _read_bytes(image_path)
  _check_size(image_path, encoded, max_image_pixels)
  return decode_image(image_path, encoded)


class SavedModelRunner:
  """Runs an image file's bytes through a SavedModel's `image_bytes`
  signature, as a TF Serving client sending the file would."""

  def __init__(self, export_dir: Union[str, Any]):
    """Loads the SavedModel.

    Args:
      export_dir: The model's base directory (latest version), a version
        directory, or a SavedModel already loaded with `adapters.load`.

    Raises:
      PredictError: no SavedModel there, or one without `image_bytes`.
    """
    from tf_mtdet.serving import adapters  # pylint: disable=g-import-not-at-top
    loaded = export_dir
    if isinstance(export_dir, (str, os.PathLike)):
      try:
        loaded = adapters.load(os.fspath(export_dir))
      except (FileNotFoundError, OSError) as e:
        raise PredictError(str(e)) from e
    if 'image_bytes' not in loaded.signatures:
      raise PredictError(f'{export_dir}: the SavedModel has no image_bytes '
                         'signature')
    self._signature = loaded.signatures['image_bytes']
    # A static batch (`export --batch-size N`) gets N copies of the image.
    args, kwargs = self._signature.structured_input_signature
    (spec,) = [*args, *kwargs.values()]
    self._batch = spec.shape[0] or 1

  def __call__(self, image_path: str, encoded: bytes) -> Dict[str, np.ndarray]:
    """The signature's outputs for one image, without the batch axis."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tf_mtdet.serving import adapters  # pylint: disable=g-import-not-at-top
    try:
      outputs = self._signature(inputs=tf.constant([encoded] * self._batch))
    except tf.errors.InvalidArgumentError as e:
      summary = adapters.error_summary(e.message)
      if 'image declares' in summary:  # The model's own size limit.
        raise PredictError(f'{image_path}: the model refused it: '
                           f'{summary}') from e
      raise PredictError(f'{image_path}: not a readable JPEG, PNG, GIF or '
                         f'BMP image ({summary})') from e
    return {k: v.numpy()[0] for k, v in outputs.items()}


def load_model(model: Union[str, Any]) -> Any:
  """A runner for `predict_image`: a `.tflite` file or the folder holding
  it (`tflite.TFLiteRunner`), a SavedModel directory or loaded SavedModel
  (`SavedModelRunner`), or a runner already made (returned as is)."""
  if callable(model) and not hasattr(model, 'signatures'):
    return model
  if isinstance(model, (str, os.PathLike)):
    path = os.fspath(model)
    # pylint: disable-next=g-import-not-at-top
    from tf_mtdet.serving import tflite
    if path.endswith('.tflite') or os.path.isfile(
        os.path.join(path, tflite.TFLITE_FILE)):
      return tflite.TFLiteRunner(path)
  return SavedModelRunner(model)


def predict_image(model: Union[str, Any],
                  image_path: str,
                  score_threshold: float = 0.3,
                  max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS
                  ) -> Dict[str, Any]:
  """Detections for one image file.

  Args:
    model: The SavedModel's base directory (latest version), a version
      directory, a SavedModel already loaded with `adapters.load`, a
      `.tflite` file from `export --format tflite`, or a runner from
      `load_model` (to predict many images without reloading).
    image_path: JPEG, PNG, GIF or BMP file.
    score_threshold: Detections scoring below it are dropped.
    max_image_pixels: Images declaring more pixels (width x height) are
      refused before decoding; None or 0: no limit. An exported SavedModel
      has its own limit (`export.max_image_pixels`) too.

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
      model there.
  """
  encoded = _read_bytes(image_path)
  _check_size(image_path, encoded, max_image_pixels)
  outputs = load_model(model)(image_path, encoded)
  n = int(outputs['num_detections'])
  keep = np.flatnonzero(outputs['detection_scores'][:n] >= score_threshold)
  height, width = (round(float(v)) for v in outputs['image_info'][0])
  result = {
      'image_size': (height, width),
      'boxes': outputs['detection_boxes'][keep],
      'scores': outputs['detection_scores'][keep],
      'classes': outputs['detection_classes'][keep].astype(np.int32),
      'class_names': [b.decode('utf-8') if isinstance(b, bytes) else str(b)
                      for b in outputs['detection_class_names'][keep]],
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


def _rle(mask: np.ndarray) -> Dict[str, Any]:
  """A 0/1 [H, W] mask as COCO RLE with a str `counts` (JSON-ready)."""
  rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
  return {'size': [int(s) for s in rle['size']],
          'counts': rle['counts'].decode('ascii')}


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
      item['mask'] = _rle(masks[i])
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


def list_images(spec: str) -> List[str]:
  """The image files `spec` names: one file, a folder (its files ending in
  `IMAGE_EXTENSIONS`, any case) or a glob pattern, sorted.

  Raises:
    PredictError: a folder or pattern with no image, or a missing file.
  """
  if os.path.isdir(spec):
    files = [os.path.join(spec, name) for name in sorted(os.listdir(spec))
             if name.lower().endswith(IMAGE_EXTENSIONS) and
             os.path.isfile(os.path.join(spec, name))]
    if not files:
      raise PredictError(f'{spec}: no image files in this folder (looked '
                         f'for {", ".join(IMAGE_EXTENSIONS)})')
    return files
  if glob.has_magic(spec):
    files = sorted(f for f in glob.glob(spec) if os.path.isfile(f))
    if not files:
      raise PredictError(f'{spec}: the pattern matches no file')
    return files
  if not os.path.isfile(spec):
    raise PredictError(f'{spec}: no such image file or folder')
  return [spec]


def image_ids(files: Sequence[str],
              annotations: Optional[str] = None) -> List[int]:
  """COCO image ids of `files`: from `annotations` (a COCO JSON whose
  `images[].file_name` basenames match the files' basenames), else 1..N.

  Raises:
    PredictError: unreadable annotations, an ambiguous basename, or a file
      the annotations do not list.
  """
  if not annotations:
    return list(range(1, len(files) + 1))
  try:
    with open(annotations, encoding='utf-8') as f:
      images = json.load(f)['images']
    by_name = {}
    for image in images:
      name = os.path.basename(str(image['file_name']))
      if name in by_name and by_name[name] != int(image['id']):
        raise PredictError(f'{annotations}: two images are named {name} '
                           f'(ids {by_name[name]} and {image["id"]})')
      by_name[name] = int(image['id'])
  except OSError as e:
    raise PredictError(f'{annotations}: cannot read annotations: '
                       f'{e.strerror or e}') from e
  except (ValueError, KeyError, TypeError) as e:
    raise PredictError(f'{annotations}: not COCO annotations with '
                       f'images[].file_name and id: {e!r}') from e
  missing = [f for f in files if os.path.basename(f) not in by_name]
  if missing:
    raise PredictError(f'{missing[0]}: not in {annotations} (images[].'
                       f'file_name){f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""}')
  return [by_name[os.path.basename(f)] for f in files]


def coco_results(detections: Dict[str, Any], image_id: int,
                 file_name: str) -> List[Dict[str, Any]]:
  """One image's detections as COCO results entries.

  Each entry: `image_id`, `category_id`, `bbox` [x, y, width, height] in
  original pixels, `score`, `segmentation` (COCO RLE, str `counts`) when the
  model has masks, and `file_name` (the image's basename; COCO tools ignore
  extra keys).
  """
  height, width = detections['image_size']
  masks = visualize.full_image_masks(detections, height, width)
  entries = []
  for i, (ymin, xmin, ymax, xmax) in enumerate(
      np.asarray(detections['boxes'], np.float64).reshape(-1, 4)):
    entry = {
        'image_id': int(image_id),
        'category_id': int(detections['classes'][i]),
        'bbox': [float(xmin), float(ymin), float(xmax - xmin),
                 float(ymax - ymin)],
        'score': float(detections['scores'][i]),
        'file_name': file_name,
    }
    if masks is not None:
      entry['segmentation'] = _rle(masks[i])
    entries.append(entry)
  return entries


def _above(detections: Dict[str, Any], threshold: float) -> Dict[str, Any]:
  """The detections scoring at least `threshold` (per-detection fields)."""
  keep = np.flatnonzero(np.asarray(detections['scores']) >= threshold)
  per_detection = ('boxes', 'scores', 'classes', 'masks', 'full_masks')
  result = {k: (np.asarray(v)[keep] if k in per_detection else v)
            for k, v in detections.items()}
  result['class_names'] = [detections['class_names'][i] for i in keep]
  return result


def picture_names(files: Sequence[str]) -> List[str]:
  """`<stem>.png` per image file.

  Raises:
    PredictError: two files would write the same picture.
  """
  names = {}
  for f in files:
    name = os.path.splitext(os.path.basename(f))[0] + '.png'
    if name in names:
      raise PredictError(f'{f}: its picture {name} would overwrite that of '
                         f'{names[name]}; predict them separately')
    names[name] = f
  return list(names)


def predict_files(model: Union[str, Any],
                  files: Sequence[str],
                  out_dir: str,
                  json_path: Optional[str] = None,
                  annotations: Optional[str] = None,
                  score_threshold: float = 0.3,
                  json_score_threshold: float = 0.0,
                  max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                  progress: Optional[TextIO] = None) -> Dict[str, Any]:
  """Every image through the model: a picture each and one COCO results file.

  Nothing is left half-done: pictures go to a hidden folder beside
  `out_dir` and move into `out_dir` (created if missing) only once every
  image has gone through; the JSON is written last, atomically. A bad image
  stops the run with a `PredictError` naming it, and no picture nor JSON of
  the run is left.

  Args:
    model: As `predict_image` takes it (SavedModel, `.tflite` file, runner).
    files: Image files (`list_images`).
    out_dir: Folder of the pictures, `<image stem>.png`.
    json_path: Optional COCO results list (`coco_results`) of every image.
    annotations: Optional COCO JSON giving the image ids (`image_ids`).
    score_threshold: Detections drawn in the pictures score at least this.
    json_score_threshold: Detections in the JSON score at least this (the
      default keeps every detection the model returns, as AP wants).
    max_image_pixels: As for `predict_image`.
    progress: Stream for the progress line; None prints nothing.

  Returns:
    `images`, `detections` (in the pictures) and `results` (JSON entries).
  """
  from tf_mtdet.utils import progress as progress_lib  # pylint: disable=g-import-not-at-top

  ids = image_ids(files, annotations)
  names = picture_names(files)
  runner = load_model(model)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.', 
                             suffix='.tmp', dir=parent)
  line = progress_lib.ProgressLine('predict', progress, total=len(files))
  results, drawn = [], 0
  try:
    for path, image_id, name in zip(files, ids, names):
      detections = predict_image(
          runner, path, min(score_threshold, json_score_threshold),
          max_image_pixels)
      results += coco_results(_above(detections, json_score_threshold),
                              image_id, os.path.basename(path))
      shown = _above(detections, score_threshold)
      drawn += len(shown['scores'])
      write_prediction(path, shown, os.path.join(staging, name),
                       max_image_pixels=max_image_pixels)
      line.update()
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
      os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  line.finish()
  if json_path:
    _write_atomic(json_path, json.dumps(results).encode('utf-8'))
  return {'images': len(files), 'detections': drawn, 'results': len(results)}
