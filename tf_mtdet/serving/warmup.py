"""TF Serving's warm-up file: `assets.extra/tf_serving_warmup_requests`.

With `--enable_model_warmup` (on by default) the model server replays the
requests in this file when it loads a version, before it serves it, so the
first real request does not pay the graph's first run (kernel selection,
memory pools, lazy initialisation). The file is a TFRecord of
`tensorflow.serving.PredictionLog` protos; the server refuses more than
1000 records.

The records are encoded here field by field (protobuf wire format) so that
`export` does not need `tensorflow-serving-api`, a dev extra; the tests parse
the file with that package's own `PredictionLog`. Field numbers, from
tensorflow_serving/apis: `PredictionLog.predict_log` = 6,
`PredictLog.request` = 1, `PredictRequest.model_spec` = 1 and `.inputs` = 2
(a map: repeated entries of key = 1, value = 2), `ModelSpec.name` = 1 and
`.signature_name` = 3.
"""

import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

WARMUP_DIR = 'assets.extra'
WARMUP_FILE = 'tf_serving_warmup_requests'
# TF Serving's limit (servables/tensorflow/saved_model_warmup_util.cc).
MAX_RECORDS = 1000
# Batch sizes of a dynamic-batch signature's records: TF Serving replays
# each record once (`num_request_iterations` 1); a second size runs the
# shape-dependent kernels again for batched traffic.
DYNAMIC_BATCH_SIZES = (1, 2)


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field (wire type 2): a string or a message."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(signature_name: str, inputs: Mapping[str, np.ndarray],
                   model_name: str = '') -> bytes:
  """A serialized `PredictionLog` holding one `PredictRequest`.

  Args:
    signature_name: The signature the request calls.
    inputs: `{input name: value}`; values become `TensorProto`s.
    model_name: `ModelSpec.name`; the server ignores it in warm-up records
      ('' leaves it out).

  Returns:
    The `PredictionLog` bytes (`predict_log.request` set).
  """
  spec = (_field(1, model_name.encode('utf-8')) if model_name else b'') + (
      _field(3, signature_name.encode('utf-8')))
  request = _field(1, spec)
  for name, value in sorted(inputs.items()):
    tensor = tf.make_tensor_proto(value).SerializeToString()
    request += _field(2, _field(1, name.encode('utf-8')) + _field(2, tensor))
  return _field(6, _field(1, request))


def generated_image(height: int, width: int) -> np.ndarray:
  """[height, width, 3] uint8: a gradient with a few flat shapes, so every
  stage (including NMS over some boxes) has work to do."""
  yy, xx = np.mgrid[:height, :width]
  image = np.stack([xx * 255 // max(width - 1, 1),
                    yy * 255 // max(height - 1, 1),
                    np.full_like(xx, 96)], axis=-1).astype(np.uint8)
  for i, (y, x, color) in enumerate(((0.2, 0.2, (220, 40, 40)),
                                     (0.5, 0.6, (40, 200, 60)),
                                     (0.6, 0.1, (30, 60, 230)))):
    y0, x0 = int(y * height), int(x * width)
    size = max(min(height, width) // (4 + i), 1)
    image[y0:y0 + size, x0:x0 + size] = color
  return image


def signature_inputs(signature_name: str, image: np.ndarray,
                     batch_size: int) -> Mapping[str, np.ndarray]:
  """The `inputs` value of a request to one of the export's signatures:
  `batch_size` copies of `image` as the signature takes them."""
  # pylint: disable-next=g-import-not-at-top
  from tf_mtdet.serving import export as export_lib
  name = export_lib.INPUT_NAME
  if signature_name == export_lib.SIGNATURES['image_tensor']:
    return {name: np.repeat(image[np.newaxis], batch_size, axis=0)}
  encoded = tf.io.encode_png(image).numpy()
  if signature_name == export_lib.SIGNATURES['image_bytes']:
    return {name: np.array([encoded] * batch_size, dtype=object)}
  example = tf.train.Example(features=tf.train.Features(feature={
      'image/encoded': tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[encoded]))}))
  return {name: np.array([example.SerializeToString()] * batch_size,
                         dtype=object)}


def write_warmup_requests(saved_model_dir: str,
                          signatures: Mapping[str, Sequence[int]],
                          image_size: Sequence[int]) -> str:
  """Writes `saved_model_dir/assets.extra/tf_serving_warmup_requests`.

  Args:
    saved_model_dir: The SavedModel (version) directory.
    signatures: `{signature name: batch sizes}`: one record per batch size
      (a static batch signature takes only its own).
    image_size: (height, width) of the generated image.

  Returns:
    The file written.

  Raises:
    ValueError: more records than TF Serving accepts.
  """
  records = [(name, batch) for name, batches in signatures.items()
             for batch in batches]
  if len(records) > MAX_RECORDS:
    raise ValueError(f'{len(records)} warm-up requests; TF Serving reads at '
                     f'most {MAX_RECORDS}')
  image = generated_image(*image_size)
  directory = os.path.join(saved_model_dir, WARMUP_DIR)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, WARMUP_FILE)
  with tf.io.TFRecordWriter(path) as writer:
    for name, batch in records:
      writer.write(prediction_log(name, signature_inputs(name, image, batch)))
  return path
