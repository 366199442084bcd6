"""SavedModel export of any family's model for TF Serving.

`ServingModule` wraps a model, its family (which runs the model for inference
and names the detections it returns) and the training pipeline's own eval
preprocessing (`Augmenter.preprocess_image`), and exposes three signatures,
all with the input name `inputs`:

* `serving_default`: uint8 `[batch, height, width, channels]`, channels 1
  (grayscale), 3 (RGB) or 4 (RGBA, alpha dropped);
* `image_bytes`: `[batch]` string of encoded JPEG/PNG/BMP/GIF (first frame);
* `tf_example`: `[batch]` serialized `tf.train.Example` with `image/encoded`.

An image above `max_image_pixels` (default
`image_size.DEFAULT_MAX_IMAGE_PIXELS`, `export.max_image_pixels` in the
experiment config) is refused with INVALID_ARGUMENT naming its size and the
limit: encoded images by the size their header declares, before any pixel is
decoded (`image_header`), so a few kilobytes declaring 20000 x 20000 pixels
cost no memory; uint8 tensors by their shape.

Images are decoded and preprocessed one by one inside `tf.map_fn`, so the
images of one `image_bytes`/`tf_example` batch may differ in size.

Outputs (every signature), with `B` the batch and `N` the detections:

* `detection_boxes` [B, N, 4] float32: ymin, xmin, ymax, xmax in pixels of the
  ORIGINAL image (Model Garden's DetectionModule returns resized-image
  pixels), clipped to the image;
* `detection_scores` [B, N] float32;
* `detection_classes` [B, N] int32;
* `detection_class_names` [B, N] string: from the label map, '' for padding
  and for ids the label map lacks;
* `num_detections` [B] int32: the first `num_detections[b]` rows are valid,
  the rest are zero padding;
* `detection_masks` [B, N, mh, mw] float32: per-box mask probabilities (only
  for models with a mask head);
* `detection_full_masks` [B, N, H, W] uint8 0/1 (with `full_image_masks`):
  masks pasted into original-image pixels; H, W are the largest image height
  and width of the batch and image b's masks live in its top-left
  [height_b, width_b] corner (zero elsewhere);
* `semantic_map` [B, H, W] uint8 (models with a segmentation head): class
  ids in ORIGINAL-image pixels (nearest neighbour); H, W are the largest
  image height and width of the batch, image b's map in its top-left
  [height_b, width_b] corner (zero elsewhere). A segmentation-only model
  returns no detections (N = 0);
* `image_info` [B, 4, 2] float32: Model Garden's image info ([original
  size], [resized size], [y, x scale], [y, x offset]).

With `batch_size` and `input_size` (`export --batch-size N --input-size H W`,
as Model Garden's `export_saved_model` takes them) the signatures have static
shapes: `serving_default` takes uint8 `[N, H, W, 3]`, the string signatures
`[N]`, for batching servers and accelerators that want them. By default
every dimension is dynamic.

`export_saved_model` writes `export_dir/<version>/` (the layout TF Serving
watches) atomically, with the label map in `assets/label_map.json` and TF
Serving's warm-up requests in `assets.extra/tf_serving_warmup_requests`
(`warmup`).
"""

import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Sequence, TextIO, Tuple, Union
import uuid

import tensorflow as tf
import tf_keras
# Private: the only switch for per-layer traces outside tf_keras.models.save
# (pinned by tests/modeling/test_model_garden_pins.py).
from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model_utils

from official.core import export_base
from official.vision.ops import box_ops

from tf_mtdet.data import image_size
from tf_mtdet.data import parser as parser_lib
from tf_mtdet.serving import image_header
from tf_mtdet.serving import warmup as warmup_lib

LABEL_MAP_ASSET = 'label_map.json'
INPUT_NAME = 'inputs'
# Signature keys, keyed by Model Garden's `function_keys` names.
SIGNATURES = {
    'image_tensor': tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    'image_bytes': 'image_bytes',
    'tf_example': 'tf_example',
}
_MASK_THRESHOLD = 0.5  # Model Garden's and Detectron's binarisation threshold.
# The config field named in the too-large message.
MAX_PIXELS_FIELD = 'export.max_image_pixels'


def read_label_map(path_or_map: Union[str, Mapping[Any, str], None]
                   ) -> Dict[int, str]:
  """Reads a label map into `{category_id: name}`.

  Args:
    path_or_map: The builder's `PREFIX-label_map.json` (`{"categories": [{"id",
      "name"}, ...]}`), a JSON file holding a plain `{id: name}` object, such a
      mapping itself, or None / '' (no names).

  Returns:
    `{category_id: name}` with integer ids.

  Raises:
    ValueError: unreadable file or malformed content (the message names the
      file).
  """
  if not path_or_map:
    return {}
  source = 'label map'
  data = path_or_map
  if isinstance(path_or_map, str):
    source = path_or_map
    try:
      with open(path_or_map, encoding='utf-8') as f:
        data = json.load(f)
    except OSError as e:
      raise ValueError(f'{source}: cannot read label map: '
                       f'{e.strerror or e}') from e
    except json.JSONDecodeError as e:
      raise ValueError(f'{source}: not a JSON label map: {e}') from e
  try:
    if isinstance(data, Mapping) and 'categories' in data:
      return {int(c['id']): str(c['name']) for c in data['categories']}
    if isinstance(data, Mapping):
      return {int(k): str(v) for k, v in data.items()}
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{source}: malformed label map entry: {e}') from e
  raise ValueError(f'{source}: a label map is a JSON object, got '
                   f'{type(data).__name__}')


def paste_box_masks(masks: tf.Tensor, boxes: tf.Tensor, height: tf.Tensor,
                    width: tf.Tensor) -> tf.Tensor:
  """Pastes per-box mask probabilities into an image canvas (bilinear).

  Mask cell (i, j) of an [mh, mw] mask covers the box's i-th row / j-th
  column of an mh x mw grid; canvas pixel centres sample that grid
  bilinearly, with a ring of zeros around the mask so edges fade out as in
  Detectron's (and Model Garden's numpy `mask_ops.paste_instance_masks`)
  zero-padded resize. One `crop_and_resize` call does it: the "crop" is the
  canvas expressed in mask-grid coordinates.

  Args:
    masks: [N, mh, mw] probabilities.
    boxes: [N, 4] ymin, xmin, ymax, xmax in canvas pixels.
    height: Canvas height (scalar int).
    width: Canvas width (scalar int).

  Returns:
    [N, height, width] float32 probabilities (0 outside the boxes).
  """
  masks = tf.cast(masks, tf.float32)
  boxes = tf.cast(boxes, tf.float32)
  mask_h = tf.cast(tf.shape(masks)[1], tf.float32)
  mask_w = tf.cast(tf.shape(masks)[2], tf.float32)
  padded = tf.pad(masks, [[0, 0], [1, 1], [1, 1]])[..., tf.newaxis]
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  # Grid cells per canvas pixel; a degenerate box samples nothing.
  step_y = mask_h / tf.maximum(ymax - ymin, 1e-3)
  step_x = mask_w / tf.maximum(xmax - xmin, 1e-3)
  # Padded-grid index sampled by the centre of canvas row / column 0.
  start_y = (0.5 - ymin) * step_y + 0.5
  start_x = (0.5 - xmin) * step_x + 0.5
  height_f = tf.cast(height, tf.float32)
  width_f = tf.cast(width, tf.float32)
  # crop_and_resize samples index y1 * (P - 1) + i * (y2 - y1) * (P - 1) /
  # (H - 1) of a P-row image (y1 for H == 1, as y2 == y1 here then).
  crop_boxes = tf.stack([
      start_y / (mask_h + 1.0),
      start_x / (mask_w + 1.0),
      (start_y + step_y * (height_f - 1.0)) / (mask_h + 1.0),
      (start_x + step_x * (width_f - 1.0)) / (mask_w + 1.0),
  ], axis=-1)
  pasted = tf.image.crop_and_resize(
      padded, crop_boxes, tf.range(tf.shape(masks)[0]),
      tf.stack([tf.cast(height, tf.int32), tf.cast(width, tf.int32)]),
      method='bilinear', extrapolation_value=0.0)
  return pasted[..., 0]


class _SharedFunctions:
  """Plain holder of the serving module's `tf.function`s.

  Neither trackable nor a `tf.function`: SavedModel's object-graph walk
  (every attribute in `dir()` of each trackable) does not reach into it, so
  `tf.saved_model.save` saves the signatures' concrete functions without
  re-tracing the functions they came from.
  """

  def __init__(self, **functions: Any):
    for name, function in functions.items():
      setattr(self, name, function)


class ServingModule(export_base.ExportModule):
  """A two-stage model with its preprocessing and postprocessing for serving.

  Subclasses Model Garden's core `export_base.ExportModule` (model holder,
  `inference_step`, `get_inference_signatures`, `export()`), not the vision
  one: the vision module decodes a batch then stacks it, so all images of a
  batch must share one size, and its image tensor signature has a fixed
  channel count.
  """

  def __init__(self,
               model: tf_keras.Model,
               family: Any,
               parser: parser_lib.DetectionParser,
               label_map: Optional[Mapping[int, str]] = None,
               *,
               max_detections: Optional[int] = None,
               full_image_masks: bool = False,
               score_threshold: float = 0.0,
               max_image_pixels: Optional[int] = (
                   image_size.DEFAULT_MAX_IMAGE_PIXELS),
               batch_size: Optional[int] = None,
               input_size: Optional[Sequence[int]] = None,
               params: Any = None):
    """Initializes the module.

    Args:
      model: The family's model.
      family: Its `tf_mtdet.families.Family` (`call_inference`,
        `detections`).
      parser: The eval parser whose `preprocess_image` is used.
      label_map: `{category_id: name}` for `detection_class_names` and the
        `assets/label_map.json` asset.
      max_detections: Detections per image in the outputs: the model's are
        truncated, or zero padded up to it; None keeps the model's count.
      full_image_masks: Also output `detection_full_masks`.
      score_threshold: Detections scoring below it are dropped (0 keeps all
        the model returns).
      max_image_pixels: Largest image accepted, in pixels (height x width,
        as declared by an encoded image's header); None or 0: no limit.
      batch_size: Static batch size of every signature; None: dynamic.
      input_size: (height, width) of `serving_default`'s images, which then
        take exactly 3 channels; None: any size and 1, 3 or 4 channels.
        The parser should resize to it (`eval_data.parser.output_size`),
        so the model sees the pixels unresized.
      params: Optional experiment config, kept as Model Garden's `params`.

    Raises:
      ValueError: a batch size or input size below 1.
    """
    super().__init__(params=params, model=model)
    if max_detections is not None and max_detections < 1:
      raise ValueError(f'max_detections must be >= 1, got {max_detections}')
    self._parser = parser
    self._family = family
    self._label_items = tuple(sorted(
        (int(k), str(v)) for k, v in (label_map or {}).items()))
    if any(k < 0 for k, _ in self._label_items):
      raise ValueError('label map ids must be >= 0')
    self._max_detections = max_detections
    self._full_image_masks = bool(full_image_masks)
    self._score_threshold = float(score_threshold)
    if max_image_pixels is not None and max_image_pixels < 0:
      raise ValueError(f'max_image_pixels must be >= 0, got {max_image_pixels}')
    self._max_image_pixels = int(max_image_pixels or 0)
    check_static_shape(batch_size, input_size)
    self.batch_size = None if batch_size is None else int(batch_size)
    self.input_size = None if input_size is None else tuple(
        int(v) for v in input_size)
    # Shapes and dtype of the parser's output, read off a trace.
    image_spec, info_spec = tf.function(
        parser.preprocess_image).get_concrete_function(
            tf.TensorSpec([None, None, 3], tf.uint8)).structured_outputs
    self._preprocessed_spec = (
        tf.TensorSpec(image_spec.shape, image_spec.dtype),
        tf.TensorSpec(info_spec.shape, info_spec.dtype))
    # One trace of the model shared by the three signatures (tracing a
    # two-stage model dominates the export time). The functions are held
    # outside the module's attributes: tf.saved_model.save re-traces every
    # traced tf.function attribute in its own save context (a new cache key),
    # which traced the whole model a second time; the signatures carry
    # their graphs anyway.
    self._shared = _SharedFunctions(
        serve_preprocessed=tf.function(
            self._serve_preprocessed,
            input_signature=[
                tf.TensorSpec([None, *image_spec.shape], image_spec.dtype),
                tf.TensorSpec([None, *info_spec.shape], info_spec.dtype)]),
        inference_from_image_tensors=tf.function(self._from_image_tensors),
        inference_from_image_bytes=tf.function(self._from_image_bytes),
        inference_from_tf_example=tf.function(self._from_tf_example))

  @property
  def label_map(self) -> Dict[int, str]:
    return dict(self._label_items)

  @property
  def warmup_image_size(self) -> Tuple[int, int]:
    """The image size of the warm-up requests: `input_size`, else the
    preprocessed (padded) size when static, else 256 x 256."""
    if self.input_size:
      return self.input_size
    height, width = self._preprocessed_spec[0].shape[:2]
    return (height or 256, width or 256)

  # Preprocessing ------------------------------------------------------------

  def _preprocess(self, images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """[B, H, W, 3] uint8 -> ([B, padded_h, padded_w, 3], [B, 4, 2])."""
    with tf.device('cpu:0'):
      return tf.map_fn(self._parser.preprocess_image, images,
                       fn_output_signature=self._preprocessed_spec)

  def _decode(self, encoded: tf.Tensor, index: tf.Tensor,
              what: str) -> tf.Tensor:
    """Encoded image bytes -> [h, w, 3] uint8, with named errors."""
    prefix = lambda n: tf.strings.substr(encoded, 0, n)
    known_format = tf.reduce_any([
        tf.equal(prefix(3), b'\xff\xd8\xff'),  # JPEG
        tf.equal(prefix(4), b'\x89PNG'),
        tf.equal(prefix(4), b'GIF8'),
        tf.equal(prefix(2), b'BM'),
    ])
    empty = ('has no (or an empty) image/encoded feature'
             if what == 'tf_example' else 'is an empty string, not an '
             'encoded image')
    checks = [
        tf.debugging.Assert(
            tf.strings.length(encoded) > 0, [f'{what}: input', index, empty]),
        tf.debugging.Assert(
            known_format,
            [f'{what}: input', index,
             'is not a JPEG, PNG, GIF or BMP image (unknown leading bytes)']),
    ]
    if self._max_image_pixels:
      # From the header, before decode_image allocates the pixels.
      checks.append(image_header.assert_size_within(
          encoded, self._max_image_pixels,
          tf.strings.join([f'{what}: input ', tf.strings.as_string(index)]),
          MAX_PIXELS_FIELD))
    with tf.control_dependencies(checks):
      image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image

  def _preprocess_encoded(self, encoded: tf.Tensor,
                          what: str) -> Tuple[tf.Tensor, tf.Tensor]:
    """[B] encoded images (any sizes) -> preprocessed batch and image_info."""
    with tf.device('cpu:0'):
      checks = [tf.debugging.Assert(
          tf.size(encoded) > 0, [f'{what}: empty batch'])]
      with tf.control_dependencies(checks):
        indices = tf.range(tf.size(encoded))
      return tf.map_fn(
          lambda args: self._parser.preprocess_image(
              self._decode(args[0], args[1], what)),
          (encoded, indices),
          fn_output_signature=self._preprocessed_spec)

  def _parse_examples(self, serialized: tf.Tensor) -> tf.Tensor:
    """[B] serialized tf.train.Example -> [B] encoded images."""
    features = tf.io.parse_example(
        serialized,
        {'image/encoded': tf.io.FixedLenFeature((), tf.string,
                                                default_value='')})
    return features['image/encoded']

  def _to_rgb(self, images: tf.Tensor) -> tf.Tensor:
    """[B, H, W, C] uint8, C in {1, 3, 4} -> [B, H, W, 3], with checks."""
    shape = tf.shape(images)
    channels = shape[3]
    checks = [
        tf.debugging.Assert(
            shape[0] > 0, ['serving_default: empty batch']),
        tf.debugging.Assert(
            tf.logical_and(shape[1] > 0, shape[2] > 0),
            [('serving_default: images must have a positive height and '
              'width; input shape is'), shape]),
        tf.debugging.Assert(
            tf.reduce_any(tf.equal(channels, [1, 3, 4])),
            [('serving_default: images must have 1 (grayscale), 3 (RGB) or '
              '4 (RGBA) channels; input shape is'), shape]),
    ]
    if self._max_image_pixels:
      pixels = tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64)
      checks.append(tf.debugging.Assert(
          pixels <= self._max_image_pixels,
          [tf.strings.join([
              'serving_default: images of ', tf.strings.as_string(shape[2]),
              ' x ', tf.strings.as_string(shape[1]), ' pixels (width x '
              'height; ', tf.strings.as_string(pixels), ' pixels), above the '
              f'limit of {self._max_image_pixels} pixels '
              f'({MAX_PIXELS_FIELD})'])]))
    with tf.control_dependencies(checks):
      # Grayscale repeats its channel; RGBA drops alpha.
      channel_index = tf.where(tf.equal(channels, 1), [0, 0, 0], [0, 1, 2])
      rgb = tf.gather(images, channel_index, axis=3)
    rgb.set_shape(images.shape[:3].concatenate([3]))
    return rgb

  # Model and postprocessing -------------------------------------------------

  def serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Runs preprocessing, the model and postprocessing on RGB images.

    Args:
      images: [B, H, W, 3] uint8.

    Returns:
      The output dict described in the module docstring.
    """
    images, image_info = self._preprocess(images)
    return self._shared.serve_preprocessed(images, image_info)

  def _serve_preprocessed(self, images: tf.Tensor,
                          image_info: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Runs the model and postprocessing on parser-preprocessed images.

    Wrapped once in a `tf.function` (`_shared.serve_preprocessed`) that
    every signature calls.

    Args:
      images: [B, padded_h, padded_w, 3] as `preprocess_image` returns them.
      image_info: [B, 4, 2] Model Garden image info.

    Returns:
      The output dict described in the module docstring.
    """
    outputs = self._family.detections(
        self._family.call_inference(self.model, images, image_info))
    return self._postprocess(outputs, tf.cast(image_info, tf.float32))

  def _postprocess(self, outputs: Mapping[str, tf.Tensor],
                   image_info: tf.Tensor) -> Dict[str, tf.Tensor]:
    if 'detection_boxes' not in outputs:
      # A segmentation-only model: no detections.
      batch = tf.shape(image_info)[0]
      outputs = dict(outputs, detection_boxes=tf.zeros([batch, 0, 4]),
                     detection_scores=tf.zeros([batch, 0]),
                     detection_classes=tf.zeros([batch, 0], tf.int32),
                     num_detections=tf.zeros([batch], tf.int32))
    boxes = tf.cast(outputs['detection_boxes'], tf.float32)
    scores = tf.cast(outputs['detection_scores'], tf.float32)
    classes = tf.cast(outputs['detection_classes'], tf.int32)
    num = tf.cast(outputs['num_detections'], tf.int32)
    masks = outputs.get('detection_masks')
    if masks is None and self._full_image_masks:
      raise ValueError('full_image_masks needs a model that outputs '
                       'detection_masks')

    # Valid rows first, in the model's (score) order.
    valid = tf.range(tf.shape(scores)[1])[tf.newaxis] < num[:, tf.newaxis]
    if self._score_threshold > 0:
      valid &= scores >= self._score_threshold
    order = tf.argsort(tf.cast(tf.logical_not(valid), tf.int32), axis=1,
                       stable=True)
    take = lambda t: tf.gather(t, order, batch_dims=1)
    boxes, scores, classes, valid = map(take, (boxes, scores, classes, valid))
    if masks is not None:
      masks = take(tf.cast(masks, tf.float32))
    if self._max_detections is not None:
      fit = lambda t: self._fit_detections(t, self._max_detections)
      boxes, scores, classes, valid = map(fit, (boxes, scores, classes, valid))
      if masks is not None:
        masks = fit(masks)

    # Resized-image pixels -> original pixels: undo the offset, then scale.
    scale = tf.tile(image_info[:, 2:3, :], [1, 1, 2])
    offset = tf.tile(image_info[:, 3:4, :], [1, 1, 2])
    boxes = box_ops.clip_boxes((boxes + offset) / scale, image_info[:, 0:1, :])

    zero = lambda t: tf.where(
        tf.reshape(valid, tf.concat([tf.shape(valid),
                                     tf.ones([tf.rank(t) - 2], tf.int32)], 0)),
        t, tf.zeros_like(t))
    result = {
        'detection_boxes': zero(boxes),
        'detection_scores': zero(scores),
        'detection_classes': zero(classes),
        'detection_class_names': self._class_names(classes, valid),
        'num_detections': tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
        'image_info': image_info,
    }
    if masks is not None:
      result['detection_masks'] = zero(masks)
      if self._full_image_masks:
        result['detection_full_masks'] = self._full_masks(
            result['detection_masks'], result['detection_boxes'], valid,
            image_info)
    if 'semantic' in outputs:
      result['semantic_map'] = semantic_at_original_size(outputs['semantic'],
                                                         image_info)
    return result

  @staticmethod
  def _fit_detections(t: tf.Tensor, n: int) -> tf.Tensor:
    """Truncates or zero pads axis 1 to n."""
    pad = tf.maximum(n - tf.shape(t)[1], 0)
    paddings = tf.concat([[[0, 0], [0, pad]],
                          tf.zeros([tf.rank(t) - 2, 2], tf.int32)], 0)
    fitted = tf.pad(t, paddings)[:, :n]
    fitted.set_shape(t.shape[:1].concatenate([n]).concatenate(t.shape[2:]))
    return fitted

  def _class_names(self, classes: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """[B, N] ids -> [B, N] names; '' for padding and unknown ids."""
    if not self._label_items:
      return tf.fill(tf.shape(classes), '')
    size = self._label_items[-1][0] + 1
    names = [''] * size
    for k, v in self._label_items:
      names[k] = v
    known = valid & (classes >= 0) & (classes < size)
    looked_up = tf.gather(tf.constant(names), tf.clip_by_value(classes, 0,
                                                                size - 1))
    return tf.where(known, looked_up, '')

  def _full_masks(self, masks: tf.Tensor, boxes: tf.Tensor, valid: tf.Tensor,
                  image_info: tf.Tensor) -> tf.Tensor:
    """Per-box masks -> [B, N, H_max, W_max] uint8 in original pixels."""
    sizes = tf.cast(tf.round(image_info[:, 0, :]), tf.int32)
    max_h = tf.reduce_max(sizes[:, 0])
    max_w = tf.reduce_max(sizes[:, 1])
    canvas = tf.TensorSpec([None, None], tf.uint8)

    def paste_detection(args):
      # One detection at a time: float canvases of all N detections at once
      # would take N x H x W x 4 bytes.
      mask, box = args
      probs = paste_box_masks(mask[tf.newaxis], box[tf.newaxis], max_h, max_w)
      return tf.cast(probs[0] > _MASK_THRESHOLD, tf.uint8)

    def paste_image(args):
      masks_i, boxes_i, valid_i, size_i = args
      pasted = tf.map_fn(paste_detection, (masks_i, boxes_i),
                         fn_output_signature=canvas)
      inside = ((tf.range(max_h)[:, tf.newaxis] < size_i[0]) &
                (tf.range(max_w)[tf.newaxis, :] < size_i[1]))
      keep = inside[tf.newaxis] & valid_i[:, tf.newaxis, tf.newaxis]
      return pasted * tf.cast(keep, tf.uint8)

    return tf.map_fn(paste_image, (masks, boxes, valid, sizes),
                     fn_output_signature=tf.TensorSpec([None, None, None],
                                                       tf.uint8))

  # Signatures ---------------------------------------------------------------

  # The three are `tf.function`s held in `self._shared` (see `__init__`);
  # these methods call them.

  def inference_from_image_tensors(self,
                                   inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`serving_default`: [B, H, W, C] uint8 images (C 1, 3 or 4)."""
    return self._shared.inference_from_image_tensors(inputs)

  def inference_from_image_bytes(self,
                                 inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`image_bytes`: [B] encoded JPEG / PNG / BMP / GIF strings."""
    return self._shared.inference_from_image_bytes(inputs)

  def inference_from_tf_example(self,
                                inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`tf_example`: [B] serialized tf.train.Example strings."""
    return self._shared.inference_from_tf_example(inputs)

  def _from_image_tensors(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self.serve(self._to_rgb(inputs))

  def _from_image_bytes(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    images, image_info = self._preprocess_encoded(inputs, 'image_bytes')
    return self._shared.serve_preprocessed(images, image_info)

  def _from_tf_example(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    encoded = self._parse_examples(inputs)
    images, image_info = self._preprocess_encoded(encoded, 'tf_example')
    return self._shared.serve_preprocessed(images, image_info)

  def get_inference_signatures(
      self, function_keys: Optional[Mapping[str, str]] = None
  ) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """Concrete functions keyed by signature name.

    Args:
      function_keys: `{'image_tensor' | 'image_bytes' | 'tf_example':
        signature_name}` (Model Garden's keys); default: all three, as
        `serving_default`, `image_bytes` and `tf_example`.

    Returns:
      `{signature_name: concrete function}` for `tf.saved_model.save`.
    """
    function_keys = dict(function_keys or SIGNATURES)
    batch = self.batch_size
    height, width, channels = (*self.input_size, 3) if self.input_size else (
        None, None, None)
    functions = {
        'image_tensor': (self._shared.inference_from_image_tensors,
                         tf.TensorSpec([batch, height, width, channels],
                                       tf.uint8, name=INPUT_NAME)),
        'image_bytes': (self._shared.inference_from_image_bytes,
                        tf.TensorSpec([batch], tf.string, name=INPUT_NAME)),
        'tf_example': (self._shared.inference_from_tf_example,
                       tf.TensorSpec([batch], tf.string, name=INPUT_NAME)),
    }
    signatures = {}
    for key, name in function_keys.items():
      if key not in functions:
        raise ValueError(f'unknown signature function key {key!r}; expected '
                         f'one of {sorted(functions)}')
      function, spec = functions[key]
      signatures[name] = function.get_concrete_function(spec)
    return signatures


def semantic_at_original_size(semantic: tf.Tensor,
                              image_info: tf.Tensor) -> tf.Tensor:
  """Class maps at the padded input size -> original-image pixels.

  Args:
    semantic: [B, padded_h, padded_w] int class ids.
    image_info: [B, 4, 2] Model Garden image info.

  Returns:
    [B, H_max, W_max] uint8: image b's resized region (offset undone) scaled
    back nearest-neighbour to its original size in the top-left corner,
    zero elsewhere.
  """
  sizes = tf.cast(tf.round(image_info[:, 0, :]), tf.int32)
  max_h, max_w = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])

  def one(args):
    labels, info, size = args
    # Original pixel centre (r + 0.5) lands at (r + 0.5) * scale - offset in
    # the padded input; take the label of the pixel it falls in.
    def source(axis):
      centres = (tf.range(size[axis], dtype=tf.float32) + 0.5) * info[2, axis]
      index = tf.cast(tf.floor(centres - info[3, axis]), tf.int32)
      return tf.clip_by_value(index, 0, tf.shape(labels)[axis] - 1)
    crop = tf.gather(tf.gather(labels, source(0), axis=0), source(1), axis=1)
    crop = tf.cast(tf.clip_by_value(crop, 0, 255), tf.uint8)
    return tf.pad(crop, [[0, max_h - size[0]], [0, max_w - size[1]]])

  return tf.map_fn(one, (semantic, image_info, sizes),
                   fn_output_signature=tf.TensorSpec([None, None], tf.uint8))


def check_static_shape(batch_size: Optional[int],
                       input_size: Optional[Sequence[int]]) -> None:
  """Refuses a batch or input size no model can take, before any work.

  Raises:
    ValueError: naming the flag.
  """
  if batch_size is not None and batch_size < 1:
    raise ValueError(f'--batch-size {batch_size}: a batch holds at least one '
                     'image')
  if input_size is not None and (len(input_size) != 2 or
                                 min(input_size) < 1):
    raise ValueError(f'--input-size {" ".join(map(str, input_size))}: '
                     'expected a positive HEIGHT and WIDTH')


def _next_version(export_dir: str) -> int:
  versions = [int(name) for name in os.listdir(export_dir)
              if name.isdigit() and os.path.isdir(os.path.join(export_dir,
                                                               name))]
  return max(versions, default=0) + 1


def _stage(stream: Optional[TextIO], message: str) -> None:
  if stream is not None:
    print(f'export: {message}', file=stream, flush=True)


def signature_keys(names: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """`{function key: signature name}` for the named signatures (all three by
  default), in `SIGNATURES` order.

  Raises:
    ValueError: an unknown name, or none at all.
  """
  if names is None:
    return dict(SIGNATURES)
  known = {name: key for key, name in SIGNATURES.items()}
  unknown = [n for n in names if n not in known]
  if unknown or not names:
    raise ValueError(f'signatures: {", ".join(unknown) or "none given"}: '
                     f'choose from {", ".join(known)}')
  return {key: name for key, name in SIGNATURES.items() if name in names}


def export_saved_model(module: ServingModule,
                       export_dir: str,
                       version: Optional[int] = None,
                       checkpoint_path: Optional[str] = None,
                       progress: Optional[TextIO] = None,
                       signatures: Optional[Sequence[str]] = None,
                       warmup: bool = True,
                       warmup_image_size: Optional[Sequence[int]] = None
                       ) -> str:
  """Writes `export_dir/<version>/` (saved_model.pb, variables, assets).

  The SavedModel is written to a hidden sibling directory (a name TF Serving
  does not take for a version) and renamed into place when complete, so a
  server watching `export_dir` never sees a partial version.

  Args:
    module: The serving module.
    export_dir: The model's base directory (TF Serving's `base_path`);
      created if missing.
    version: Version number; default: 1 + the largest existing one (1 if
      none).
    checkpoint_path: Optional checkpoint file or directory (latest) to read
      the model's weights from first.
    progress: Stream for one line per stage (tracing, writing, renaming);
      None prints nothing.
    signatures: Signature names to write (default all three:
      `serving_default`, `image_bytes`, `tf_example`); each one traces the
      whole model, so fewer export faster.
    warmup: Write TF Serving's warm-up requests (`warmup.py`): one per
      signature and batch size (the static one, else 1 and 2), of a
      generated image.
    warmup_image_size: (height, width) of that image; default the module's
      `input_size`, else its preprocessed (padded) size, else 256 x 256.

  Returns:
    The version directory written.

  Raises:
    FileExistsError: the version directory already exists.
    ValueError: a version below 1, or an unknown signature name.
  """
  keys = signature_keys(signatures)
  os.makedirs(export_dir, exist_ok=True)
  if version is None:
    version = _next_version(export_dir)
  if int(version) < 1:
    raise ValueError(f'version must be a positive integer, got {version}')
  final_dir = os.path.join(export_dir, str(int(version)))
  if os.path.exists(final_dir):
    raise FileExistsError(f'{final_dir}: version {version} already exists; '
                          'refusing to overwrite it')
  tag = f'{int(version)}-{uuid.uuid4().hex[:8]}'
  staging_dir = os.path.join(export_dir, f'.tmp-{tag}')
  label_dir = tempfile.mkdtemp(prefix=f'.tmp-labels-{tag}', dir=export_dir)
  try:
    label_path = os.path.join(label_dir, LABEL_MAP_ASSET)
    with open(label_path, 'w', encoding='utf-8') as f:
      json.dump({'categories': [{'id': k, 'name': v}
                                for k, v in sorted(module.label_map.items())]},
                f, indent=1)
    # Tracked by the module, so tf.saved_model.save copies it to assets/.
    module.label_map_file = tf.saved_model.Asset(label_path)
    start = time.monotonic()
    _stage(progress, 'tracing the serving signatures (model with pre- and '
           'post-processing)')
    # Traced here to time it; export_base.export gets the cached functions.
    module.get_inference_signatures(keys)
    _stage(progress, f'traced in {time.monotonic() - start:.1f} s; writing '
           f'the SavedModel to {staging_dir}')
    start = time.monotonic()
    # TF Serving reads only the signatures: skipping tf_keras's per-layer
    # call traces (a Keras-loadable copy of every layer) cuts the write
    # about 5x (tiny CoMask: 101 s -> 21 s) with the same signatures.
    with keras_saved_model_utils.keras_option_scope(
        save_traces=False, in_tf_saved_model_scope=True):
      export_base.export(module, keys, staging_dir,
                         checkpoint_path=checkpoint_path, timestamped=False)
    if warmup:
      batches = ((module.batch_size,) if module.batch_size else
                 warmup_lib.DYNAMIC_BATCH_SIZES)
      warmup_lib.write_warmup_requests(
          staging_dir, {name: batches for name in keys.values()},
          warmup_image_size or module.warmup_image_size)
    if os.path.exists(final_dir):
      raise FileExistsError(f'{final_dir}: version {version} appeared while '
                            'exporting; refusing to overwrite it')
    _stage(progress, f'written in {time.monotonic() - start:.1f} s; renaming '
           f'it to {final_dir}')
    os.rename(staging_dir, final_dir)
  finally:
    shutil.rmtree(staging_dir, ignore_errors=True)
    shutil.rmtree(label_dir, ignore_errors=True)
  return final_dir
