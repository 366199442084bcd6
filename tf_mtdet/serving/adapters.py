"""TF Serving's Predict request handling, locally, on a loaded SavedModel.

A thin stand-in for `tensorflow_model_server` so the serving contract (REST
JSON and gRPC `PredictRequest`/`PredictResponse`) can be checked without the
server binary:

* `load(export_dir)` resolves the latest numeric version like the server;
* `predict_rest(loaded, body)` follows the REST API's row (`instances` ->
  `predictions`) and columnar (`inputs` -> `outputs`) formats, `{"b64": ...}`
  binary values, and returns `{"error": message}` instead of raising;
* `predict_grpc(loaded, request)` answers a `PredictRequest` with a
  `PredictResponse`, or raises `ServingError`, a `grpc.RpcError` with the
  status code the server would send (INVALID_ARGUMENT for a bad request).

`tensorflow_serving` (the `tensorflow-serving-api` dev extra) is imported
only by `predict_grpc`, the one function that needs its protos: `load`,
`error_summary` and `predict_rest`, which `tf-mtdet predict` uses, work on a
plain install.
"""

import base64
import json
import os
from typing import Any, Dict, Mapping, Optional, Union

import grpc
import numpy as np
import tensorflow as tf

_DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
# OpError codes are the canonical (gRPC) status codes.
_STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(grpc.RpcError):
  """A failed Predict call, shaped like the error a gRPC stub raises.

  `code()` is a `grpc.StatusCode` and `details()` the server's message, so
  client code written against a real server handles both alike.
  """

  def __init__(self, code: grpc.StatusCode, details: str):
    super().__init__(f'{code.name}: {details}')
    self._code = code
    self._details = details

  def code(self) -> grpc.StatusCode:
    return self._code

  def details(self) -> str:
    return self._details


def error_summary(message: str) -> str:
  """The reason in a TensorFlow runtime error, without the Python runtime's
  preamble ("Graph execution error", node names), as the server reports it."""
  lines = [line.strip() for line in message.splitlines()]
  kept = [line for line in lines if line and not line.startswith(
      ('Graph execution error', 'Detected at node', '<stack traces', '[['))]
  return ' '.join(kept) or message.strip()


def _invalid(details: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, details)


def resolve_version_dir(export_dir: str) -> str:
  """The SavedModel directory TF Serving would load from `export_dir`.

  Args:
    export_dir: A SavedModel directory, or a base directory of numeric
      version subdirectories (the latest is taken, as the server's default
      version policy does).

  Returns:
    The directory holding `saved_model.pb`.

  Raises:
    FileNotFoundError: no SavedModel there.
  """
  if os.path.isfile(os.path.join(export_dir, 'saved_model.pb')):
    return export_dir
  versions = []
  if os.path.isdir(export_dir):
    versions = [int(name) for name in os.listdir(export_dir)
                if name.isdigit() and os.path.isfile(
                    os.path.join(export_dir, name, 'saved_model.pb'))]
  if not versions:
    raise FileNotFoundError(
        f'{export_dir}: no SavedModel (saved_model.pb) there nor in a numeric '
        'version subdirectory')
  return os.path.join(export_dir, str(max(versions)))


def load(export_dir: str) -> Any:
  """Loads the SavedModel TF Serving would serve from `export_dir`.

  Args:
    export_dir: A version directory or the model's base directory.

  Returns:
    The loaded SavedModel (`.signatures` holds the serving signatures).
  """
  path = resolve_version_dir(export_dir)
  loaded = tf.saved_model.load(path)
  name = os.path.basename(os.path.normpath(path))
  loaded.serving_version = int(name) if name.isdigit() else 0
  return loaded


def _signature(loaded: Any, name: str):
  if name not in loaded.signatures:
    raise _invalid(f'Serving signature name: "{name}" not found in signature '
                   f'def; available: {sorted(loaded.signatures.keys())}')
  return loaded.signatures[name]


def _input_specs(function) -> Dict[str, tf.TensorSpec]:
  return dict(function.structured_input_signature[1])


def _call(function, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Checks inputs against the signature and runs it; errors -> ServingError."""
  specs = _input_specs(function)
  unknown = sorted(set(inputs) - set(specs))
  missing = sorted(set(specs) - set(inputs))
  if unknown or missing:
    raise _invalid(f'input tensor names {unknown or missing} not in the '
                   f'signature; expected exactly {sorted(specs)}')
  tensors = {}
  for name, spec in specs.items():
    value = inputs[name]
    if tf.as_dtype(value.dtype) != spec.dtype:
      raise _invalid(f'Expects input "{name}" to be {spec.dtype.name} but '
                     f'{tf.as_dtype(value.dtype).name} is provided')
    if not spec.shape.is_compatible_with(value.shape):
      raise _invalid(f'input "{name}" must have shape {spec.shape} (None = '
                     f'any), got {list(value.shape)}')
    try:
      tensors[name] = tf.constant(value, dtype=spec.dtype)
    except (TypeError, ValueError) as e:
      raise _invalid(f'input "{name}": cannot make a {spec.dtype.name} '
                     f'tensor: {e}') from e
  try:
    outputs = function(**tensors)
  except tf.errors.OpError as e:
    raise ServingError(
        _STATUS_BY_CODE.get(e.error_code, grpc.StatusCode.UNKNOWN),
        error_summary(e.message)) from e
  return {name: value.numpy() for name, value in outputs.items()}


# REST ------------------------------------------------------------------------


def _is_b64(value: Any) -> bool:
  return isinstance(value, dict) and set(value) == {'b64'}


def _decode_json_value(value: Any) -> Any:
  """Replaces `{"b64": ...}` objects by bytes, recursively."""
  if _is_b64(value):
    if not isinstance(value['b64'], str):
      raise _invalid('a "b64" value must be a base64 string')
    try:
      return base64.b64decode(value['b64'], validate=True)
    except ValueError as e:
      raise _invalid(f'invalid base64 in a "b64" value: {e}') from e
  if isinstance(value, list):
    return [_decode_json_value(v) for v in value]
  if isinstance(value, dict):
    raise _invalid('a JSON object in a tensor value must be {"b64": ...}')
  return value


def _json_to_array(value: Any, spec: tf.TensorSpec, name: str) -> np.ndarray:
  """A decoded JSON (nested list) value -> an array of the spec's dtype."""
  if spec.dtype == tf.string:
    array = np.array(value, dtype=object)
    flat = array.reshape(-1)
    for i, item in enumerate(flat):
      if isinstance(item, str):
        flat[i] = item.encode('utf-8')
      elif not isinstance(item, bytes):
        raise _invalid(f'input "{name}" is a string tensor; got a '
                       f'{type(item).__name__} value')
    return flat.reshape(array.shape)
  try:
    array = np.array(value)
  except ValueError as e:
    raise _invalid(f'input "{name}": values do not form a rectangular '
                   f'tensor (lists of different sizes): {e}') from e
  if array.dtype == object or array.dtype.kind in 'US':
    raise _invalid(f'input "{name}": expected {spec.dtype.name} numbers '
                   'forming a rectangular tensor')
  if spec.dtype.is_integer:
    if array.dtype.kind == 'f':
      raise _invalid(f'input "{name}" expects {spec.dtype.name} values; got '
                     'floating point numbers')
    if array.size and (array.min() < spec.dtype.min or
                       array.max() > spec.dtype.max):
      raise _invalid(f'input "{name}": values out of the {spec.dtype.name} '
                     f'range [{spec.dtype.min}, {spec.dtype.max}]')
  elif spec.dtype.is_bool != (array.dtype.kind == 'b') and array.size:
    raise _invalid(f'input "{name}" expects {spec.dtype.name} values')
  return array.astype(spec.dtype.as_numpy_dtype)


def _rest_inputs(body: Mapping[str, Any],
                 specs: Mapping[str, tf.TensorSpec]) -> Dict[str, np.ndarray]:
  """The signature's inputs from a row or columnar request body."""
  if ('instances' in body) == ('inputs' in body):
    raise _invalid('the request body needs exactly one of "instances" (row '
                   'format) or "inputs" (columnar format)')
  names = sorted(specs)
  if 'instances' in body:
    instances = body['instances']
    if not isinstance(instances, list) or not instances:
      raise _invalid('"instances" must be a non-empty list')
    named = [isinstance(x, dict) and not _is_b64(x) for x in instances]
    if any(named) and not all(named):
      raise _invalid('"instances" mixes named ({"input": value}) and bare '
                     'values')
    if not all(named):
      if len(names) != 1:
        raise _invalid(f'the signature has inputs {names}: each instance '
                       'must be an object naming them')
      columns = {names[0]: instances}
    else:
      columns = {}
      for i, instance in enumerate(instances):
        if sorted(instance) != names:
          raise _invalid(f'instance {i} has inputs {sorted(instance)}; '
                         f'expected {names}')
        for key, value in instance.items():
          columns.setdefault(key, []).append(value)
  else:
    inputs = body['inputs']
    if isinstance(inputs, dict) and not _is_b64(inputs):
      columns = inputs
    elif len(names) == 1:
      columns = {names[0]: inputs}
    else:
      raise _invalid(f'the signature has inputs {names}: "inputs" must be '
                     'an object naming them')
  arrays = {}
  for key, value in columns.items():
    if key not in specs:
      raise _invalid(f'input "{key}" is not in the signature; expected '
                     f'{names}')
    arrays[key] = _json_to_array(_decode_json_value(value), specs[key], key)
  return arrays


def _to_json(name: str, value: np.ndarray) -> Any:
  """An output array -> JSON; strings as UTF-8 text, `*_bytes` as b64."""
  if value.dtype != object:
    return value.tolist()

  def convert(item):
    if isinstance(item, list):
      return [convert(x) for x in item]
    if not name.endswith('_bytes'):
      try:
        return item.decode('utf-8')
      except UnicodeDecodeError:
        pass
    return {'b64': base64.b64encode(item).decode('ascii')}

  return convert(value.tolist())


def predict_rest(loaded: Any,
                 body: Union[str, bytes, Mapping[str, Any]],
                 signature_name: Optional[str] = None) -> Dict[str, Any]:
  """Answers a REST `:predict` request body as TF Serving does.

  Args:
    loaded: From `load`.
    body: The JSON request (text or parsed): `{"signature_name": ...,
      "instances": [...]}` (row format) or `{"inputs": ...}` (columnar).
    signature_name: Used when the body names none (default
      `serving_default`).

  Returns:
    `{"predictions": [...]}` (row format: one value per instance, or one
    `{output: value}` object per instance when there are several outputs),
    `{"outputs": ...}` (columnar), or `{"error": message}`.
  """
  try:
    if isinstance(body, (str, bytes)):
      try:
        body = json.loads(body)
      except json.JSONDecodeError as e:
        raise _invalid(f'JSON Parse error: {e}') from e
    if not isinstance(body, Mapping):
      raise _invalid('the request body must be a JSON object')
    name = body.get('signature_name') or signature_name or _DEFAULT_SIGNATURE
    function = _signature(loaded, name)
    outputs = _call(function, _rest_inputs(body, _input_specs(function)))
  except ServingError as e:
    return {'error': e.details()}
  except (TypeError, ValueError) as e:  # Malformed values the checks missed.
    return {'error': f'invalid request: {e}'}
  if 'instances' in body:
    batch = {len(v) for v in outputs.values() if np.ndim(v)}
    if len(batch) != 1:
      return {'error': 'row format needs outputs that share their first '
                       'dimension; use the columnar "inputs" format'}
    if len(outputs) == 1:
      ((key, value),) = outputs.items()
      return {'predictions': _to_json(key, value)}
    rows = [{} for _ in range(batch.pop())]
    for key, value in outputs.items():
      for row, item in zip(rows, _to_json(key, value)):
        row[key] = item
    return {'predictions': rows}
  if len(outputs) == 1:
    ((key, value),) = outputs.items()
    return {'outputs': _to_json(key, value)}
  return {'outputs': {k: _to_json(k, v) for k, v in outputs.items()}}


# gRPC ------------------------------------------------------------------------


def predict_grpc(loaded: Any, request: 'predict_pb2.PredictRequest'
                 ) -> 'predict_pb2.PredictResponse':
  """Answers a gRPC `PredictRequest` as TF Serving's `Predict` does.

  Args:
    loaded: From `load`.
    request: Inputs as `TensorProto`s keyed by signature input name;
      `model_spec.signature_name` (default `serving_default`) and
      `output_filter` are honoured.

  Returns:
    The `PredictResponse` (outputs as `TensorProto`s, `model_spec` echoed with
    the signature and version).

  Raises:
    ServingError: with `code()` INVALID_ARGUMENT for a bad request (unknown
      signature, input name, dtype, shape, or content the model rejects).
  """
  # The dev extra; only the gRPC request format needs it.
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top

  name = request.model_spec.signature_name or _DEFAULT_SIGNATURE
  function = _signature(loaded, name)
  inputs = {}
  for key, proto in request.inputs.items():
    try:
      inputs[key] = tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
      raise _invalid(f'input "{key}": malformed TensorProto: {e}') from e
  outputs = _call(function, inputs)
  if request.output_filter:
    unknown = sorted(set(request.output_filter) - set(outputs))
    if unknown:
      raise _invalid(f'output_filter names {unknown} not in the signature '
                     f'outputs {sorted(outputs)}')
    outputs = {k: outputs[k] for k in request.output_filter}
  response = predict_pb2.PredictResponse()
  response.model_spec.name = request.model_spec.name
  response.model_spec.signature_name = name
  response.model_spec.version.value = getattr(loaded, 'serving_version', 0)
  for key, value in outputs.items():
    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
  return response
