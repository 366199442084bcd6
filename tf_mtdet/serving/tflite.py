"""TFLite export of the single-shot families, and its interpreter runner.

The model takes Model Garden's `export_tflite` shape: one image of a fixed
size, batch 1, the postprocessing (box decoding and per-class NMS) in the
graph with TFLite's builtin ops (NON_MAX_SUPPRESSION_V5 and friends), so no
select-TF ops or custom ops are needed. Inputs and outputs (signature
`serving_default`):

* `image` float32 [1, H, W, 3]: RGB pixel values 0-255, the image resized
  with its aspect ratio kept to fit H x W (bilinear, half-pixel centres:
  scale `s = min(H / h, W / w)`, size `round(h * s) x round(w * s)`) and
  placed in the top-left corner; the rest is ignored;
* `image_shape` float32 [1, 2]: that resized height and width;
* `detection_boxes` [1, N, 4] ymin, xmin, ymax, xmax in input pixels (divide
  by the scale for original pixels), `detection_scores` [1, N],
  `detection_classes` [1, N] int32, `num_detections` [1] int32;
* `semantic` [1, H', W'] int32 class ids at the padded input size (models
  with a segmentation head).

In the graph the image goes through the eval parser's own normalisation and
padding (`preprocess_image`, which leaves an H x W image unresized), then
the padding is zeroed as the parser's resize-then-pad leaves it, then the
model runs. `TFLiteRunner` does the host side (decode, resize, pad; boxes
and class map back to original pixels, class names) so `predict` returns
the same detections as from the SavedModel.

`export_tflite` writes a folder: `model.tflite` and `model.json` (input
size, quantisation, label map, score threshold) beside it.
"""

import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np

TFLITE_FILE = 'model.tflite'
METADATA_FILE = 'model.json'
QUANTIZATIONS = ('none', 'fp16', 'dynamic')
IMAGE_INPUT = 'image'
SHAPE_INPUT = 'image_shape'


class TFLiteError(ValueError):
  """A model, flag or file the TFLite path cannot take; names it."""


def check_exportable(model_type: str, batch_size: Optional[int],
                     quantize: str) -> None:
  """Refuses what cannot become a TFLite model, before any work.

  Raises:
    TFLiteError: a two-stage family, a batch size other than 1, or an
      unknown quantisation.
  """
  if model_type != 'single_shot':
    raise TFLiteError(
        f'--format tflite: model.type {model_type} has no TFLite export; only '
        'the single-shot families (RetinaNet, IvaNet) convert (a two-stage '
        "model's RoI ops have no TFLite builtins): export a SavedModel")
  if batch_size is not None and batch_size != 1:
    raise TFLiteError(f'--batch-size {batch_size}: a TFLite model takes one '
                      'image (batch 1)')
  if quantize not in QUANTIZATIONS:
    raise TFLiteError(f'--quantize {quantize}: choose from '
                      f'{", ".join(QUANTIZATIONS)}')


def inference_function(model: Any, family: Any, parser: Any,
                       input_size: Sequence[int]):
  """The concrete function converted: see the module docstring.

  Args:
    model: The single-shot model (weights built).
    family: Its family (`call_inference`, `detections`).
    parser: The eval parser, resizing to `input_size`.
    input_size: (H, W) of the `image` input.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  height, width = (int(v) for v in input_size)

  def serve(image, image_shape):
    # Float [0, 1] pixels are normalised as uint8 ones are (Model Garden's
    # normalize_image converts uint8 to exactly these).
    normalized, _ = parser.preprocess_image(image[0] / 255.0)
    padded = tf.shape(normalized)[:2]
    rows = tf.range(padded[0], dtype=tf.float32)[:, tf.newaxis]
    cols = tf.range(padded[1], dtype=tf.float32)[tf.newaxis, :]
    inside = tf.logical_and(rows < image_shape[0, 0], cols < image_shape[0, 1])
    normalized *= tf.cast(inside, normalized.dtype)[..., tf.newaxis]
    ones = tf.ones_like(image_shape)
    image_info = tf.stack([image_shape, image_shape, ones, ones * 0.0],
                          axis=1)
    outputs = family.detections(family.call_inference(
        model, normalized[tf.newaxis], image_info))
    keys = ('detection_boxes', 'detection_scores', 'detection_classes',
            'num_detections', 'semantic')
    casts = {'detection_classes': tf.int32, 'num_detections': tf.int32,
             'semantic': tf.int32}
    return {k: tf.cast(outputs[k], casts.get(k, tf.float32))
            for k in keys if k in outputs}

  return tf.function(serve).get_concrete_function(
      tf.TensorSpec([1, height, width, 3], tf.float32, name=IMAGE_INPUT),
      tf.TensorSpec([1, 2], tf.float32, name=SHAPE_INPUT))


def convert(function: Any, model: Any, quantize: str = 'none') -> bytes:
  """Converts a concrete function with TFLite's builtin op set.

  Args:
    function: From `inference_function`.
    model: The trackable holding its variables.
    quantize: 'none' (float32), 'fp16' (float16 weights) or 'dynamic'
      (int8 weights, dynamic-range activations).

  Returns:
    The flatbuffer.

  Raises:
    TFLiteError: the converter refused it (the message names `--quantize`).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_mtdet import errors  # pylint: disable=g-import-not-at-top

  converter = tf.lite.TFLiteConverter.from_concrete_functions([function],
                                                              model)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantize in ('fp16', 'dynamic'):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == 'fp16':
    converter.target_spec.supported_types = [tf.float16]
  try:
    return converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    # ConverterError and the converter's ValueErrors alike.
    reason = errors.tf_reason(str(e)).replace('\n', ' ')
    raise TFLiteError(f'--quantize {quantize}: the TFLite converter refused '
                      f'the model: {reason[:300]}') from e


def export_tflite(config: Any, checkpoint: str, out_dir: str,
                  quantize: str = 'none',
                  input_size: Optional[Sequence[int]] = None,
                  batch_size: Optional[int] = None,
                  progress: Optional[TextIO] = None,
                  model: Any = None) -> str:
  """Exports a single-shot checkpoint as `out_dir/model.tflite`.

  The folder is written beside `out_dir` under a hidden name and renamed
  into place when complete; an existing `out_dir` is refused.

  Args:
    config: The experiment config.
    checkpoint: Checkpoint prefix or model dir (ignored with `model`).
    out_dir: The folder to create.
    quantize: See `convert`.
    input_size: (H, W) of the input; default the eval parser's output size.
    batch_size: Must be None or 1.
    progress: Stream for one line per stage.
    model: A built model to export instead of restoring `checkpoint`.

  Returns:
    The `.tflite` file written.

  Raises:
    TFLiteError: see `check_exportable` and `convert`; an existing
      `out_dir`.
  """
  from tf_mtdet import families  # pylint: disable=g-import-not-at-top
  from tf_mtdet.serving import export as export_lib  # pylint: disable=g-import-not-at-top
  from tf_mtdet.serving import exporter  # pylint: disable=g-import-not-at-top
  from tf_mtdet.training import evaluate  # pylint: disable=g-import-not-at-top

  check_exportable(config.model.type, batch_size, quantize)
  export_lib.check_static_shape(batch_size, input_size)
  if os.path.exists(out_dir):
    raise TFLiteError(f'{out_dir}: already exists; refusing to overwrite it')
  label_map = export_lib.read_label_map(config.train_data.label_map)
  input_size = tuple(input_size or config.eval_data.parser.output_size)
  config = exporter.fixed_input_config(config, input_size)
  family = families.get(config)
  if model is None:
    checkpoint = evaluate.resolve_checkpoint(checkpoint)
    _stage(progress, f'building the model and restoring {checkpoint}')
    model, _ = evaluate.load_model(config, checkpoint, family)
  start = time.monotonic()
  _stage(progress, f'converting to TFLite (input {input_size[0]}x'
         f'{input_size[1]}, --quantize {quantize})')
  function = inference_function(model, family,
                                family.build_parser(config.eval_data),
                                input_size)
  flatbuffer = convert(function, model, quantize)
  _stage(progress, f'converted in {time.monotonic() - start:.1f} s '
         f'({len(flatbuffer) / 2**20:.2f} MiB)')
  metadata = {
      'format': 'tflite',
      'input_size': list(input_size),
      'quantize': quantize,
      'score_threshold': float(config.export.score_threshold),
      'label_map': {str(k): v for k, v in sorted(label_map.items())},
      'outputs': sorted(function.structured_outputs),
  }
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.',
                             suffix='.tmp', dir=parent)
  try:
    with open(os.path.join(staging, TFLITE_FILE), 'wb') as f:
      f.write(flatbuffer)
    with open(os.path.join(staging, METADATA_FILE), 'w',
              encoding='utf-8') as f:
      json.dump(metadata, f, indent=1)
    os.rename(staging, out_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return os.path.join(out_dir, TFLITE_FILE)


def _stage(stream: Optional[TextIO], message: str) -> None:
  if stream is not None:
    print(f'export: {message}', file=stream, flush=True)


def _interpreter(path: str):
  """LiteRT's interpreter (`ai-edge-litert`), else TensorFlow's."""
  try:
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    return litert.Interpreter(model_path=path)
  except ImportError:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.lite.Interpreter(model_path=path)


def letterbox(image: np.ndarray, input_size: Sequence[int]
              ) -> Tuple[np.ndarray, np.ndarray]:
  """Fits an image into the input as the eval parser does.

  Args:
    image: [h, w, 3] uint8 RGB.
    input_size: (H, W).

  Returns:
    [1, H, W, 3] float32 (image top-left, zeros elsewhere) and Model
    Garden's image_info [4, 2] ([h, w], [resized h, w], [y, x scale], [0,
    0]).
  """
  import cv2  # pylint: disable=g-import-not-at-top

  size = np.array(image.shape[:2], np.float32)
  desired = np.array(input_size, np.float32)
  # As resize_and_crop_image: float32 scale, round half to even.
  scaled = np.round(size * np.float32(np.min(desired / size)))
  resized = cv2.resize(image.astype(np.float32),
                       (int(scaled[1]), int(scaled[0])),
                       interpolation=cv2.INTER_LINEAR)
  canvas = np.zeros([1, int(desired[0]), int(desired[1]), 3], np.float32)
  canvas[0, :resized.shape[0], :resized.shape[1]] = resized
  info = np.stack([size, scaled, scaled / size, np.zeros(2, np.float32)])
  return canvas, info


class TFLiteRunner:
  """A `.tflite` export run like `predict.SavedModelRunner`: one image
  file's bytes in, the SavedModel signature's outputs (one image, original
  pixels) out."""

  def __init__(self, path: str):
    """Loads the model and its `model.json`.

    Args:
      path: The `.tflite` file, or the folder `export_tflite` wrote.

    Raises:
      TFLiteError: missing or unreadable file or metadata.
    """
    if os.path.isdir(path):
      path = os.path.join(path, TFLITE_FILE)
    metadata_path = os.path.join(os.path.dirname(path), METADATA_FILE)
    try:
      with open(metadata_path, encoding='utf-8') as f:
        self.metadata = json.load(f)
      self._label_map = {int(k): v
                         for k, v in self.metadata['label_map'].items()}
      self._input_size = tuple(self.metadata['input_size'])
      self._score_threshold = float(self.metadata['score_threshold'])
    except OSError as e:
      raise TFLiteError(f'{metadata_path}: cannot read the TFLite model\'s '
                        f'metadata: {e.strerror or e}') from e
    except (ValueError, KeyError, TypeError) as e:
      raise TFLiteError(f'{metadata_path}: not tf-mtdet TFLite metadata: '
                        f'{e!r}') from e
    try:
      interpreter = _interpreter(path)
    except ValueError as e:
      raise TFLiteError(f'{path}: not a readable TFLite model: {e}') from e
    self._run = interpreter.get_signature_runner()

  def __call__(self, image_path: str, encoded: bytes) -> Dict[str, np.ndarray]:
    """The SavedModel signature's outputs for one image (no batch axis)."""
    # pylint: disable-next=g-import-not-at-top
    from tf_mtdet.serving import predict
    image = predict.decode_image(image_path, encoded)
    canvas, info = letterbox(image, self._input_size)
    raw = self._run(**{IMAGE_INPUT: canvas,
                       SHAPE_INPUT: info[1][np.newaxis].astype(np.float32)})
    return decode_outputs(raw, info, self._label_map, self._score_threshold)


def decode_outputs(raw: Mapping[str, np.ndarray], info: np.ndarray,
                   label_map: Mapping[int, str],
                   score_threshold: float = 0.0) -> Dict[str, np.ndarray]:
  """The TFLite model's outputs -> the SavedModel signature's, one image.

  Boxes go from input to original pixels (divided by the scale, clipped to
  the image), class ids get their names, the class map is sampled back at
  original pixel centres (nearest neighbour, as the SavedModel does), and
  detections below `score_threshold` become padding.
  """
  height, width = (int(round(v)) for v in info[0])
  boxes = raw.get('detection_boxes', np.zeros([1, 0, 4], np.float32))[0]
  scores = raw.get('detection_scores', np.zeros([1, 0], np.float32))[0]
  classes = raw.get('detection_classes', np.zeros([1, 0], np.int32))[0]
  count = int(raw.get('num_detections', np.zeros([1], np.int32))[0])
  keep = np.arange(len(scores)) < count
  keep &= scores >= score_threshold
  order = np.argsort(~keep, kind='stable')
  boxes, scores, classes, keep = (boxes[order], scores[order],
                                  classes[order], keep[order])
  boxes = boxes / np.tile(info[2], 2)
  boxes = np.clip(boxes, 0, [height, width, height, width])
  names = np.array([label_map.get(int(c), '') if k else ''
                    for c, k in zip(classes, keep)], dtype=object)
  outputs = {
      'detection_boxes': np.where(keep[:, None], boxes, 0).astype(np.float32),
      'detection_scores': np.where(keep, scores, 0).astype(np.float32),
      'detection_classes': np.where(keep, classes, 0).astype(np.int32),
      'detection_class_names': names,
      'num_detections': np.int32(keep.sum()),
      'image_info': info,
  }
  if 'semantic' in raw:
    labels = raw['semantic'][0]
    rows = np.clip(np.floor((np.arange(height) + 0.5) * info[2, 0]).astype(
        int), 0, labels.shape[0] - 1)
    cols = np.clip(np.floor((np.arange(width) + 0.5) * info[2, 1]).astype(
        int), 0, labels.shape[1] - 1)
    outputs['semantic_map'] = np.clip(labels[rows][:, cols], 0, 255).astype(
        np.uint8)
  return outputs


def score_differences(reference: Mapping[str, Any],
                      candidate: Mapping[str, Any], top: int = 10,
                      min_iou: float = 0.9) -> list:
  """Per detection of `reference`'s first `top`: the smallest score
  difference to a `candidate` detection of the same class with box IoU >=
  `min_iou`, or None when there is none. Both as `predict_image` returns."""
  from pycocotools import mask as mask_api  # pylint: disable=g-import-not-at-top
  count = min(top, len(reference['scores']))
  if not count or not len(candidate['scores']):
    return [None] * count
  xywh = lambda b: np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1],
                             b[:, 2] - b[:, 0]], axis=-1).astype(np.float64)
  ious = mask_api.iou(xywh(np.asarray(reference['boxes'][:count])),
                      xywh(np.asarray(candidate['boxes'])),
                      [0] * len(candidate['scores']))
  scores = np.asarray(candidate['scores'])
  differences = []
  for i in range(count):
    found = ((np.asarray(candidate['classes']) == reference['classes'][i]) &
             (ious[i] >= min_iou))
    differences.append(float(np.min(np.abs(scores[found] -
                                           reference['scores'][i])))
                       if found.any() else None)
  return differences


def unmatched_detections(reference: Mapping[str, Any],
                         candidate: Mapping[str, Any], top: int = 10,
                         min_iou: float = 0.9,
                         score_tolerance: float = 0.02) -> list:
  """Indices of `reference`'s first `top` detections that `candidate` does
  not find: no detection of the same class with box IoU >= `min_iou` and a
  score within `score_tolerance` (how the TFLite model is held to the
  SavedModel's detections)."""
  return [i for i, d in enumerate(score_differences(reference, candidate, top,
                                                    min_iou))
          if d is None or d > score_tolerance]
