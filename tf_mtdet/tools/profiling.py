"""FLOPs and trainable parameters of a model, in total and per top-level part.

mmdetection's `get_flops` for this package. A model's top-level parts are the
layers it holds in public attributes (`backbone`, `decoder`, `rpn_head`,
`detection_head`, ... for Model Garden's Mask R-CNN; `backbone`, `decoder`,
`head` for RetinaNet); a list or dict of layers in one attribute (the cascade's
`detection_head` list) is one part. What no part owns is reported as `other`.

FLOPs are counted as Model Garden's `train_utils.try_count_flops` counts them:
the inference call is traced into a concrete function, its variables frozen
into constants, and TensorFlow's profiler sums the registered per-op
statistics over the graph. A multiply-add counts 2 FLOPs (Conv2D:
2 * B * H_out * W_out * k_h * k_w * C_in * C_out; MatMul: 2 * M * K * N);
element-wise Add/Mul/BiasAdd count 1 per output element; ops without
registered statistics (FusedBatchNormV3, Relu, Sigmoid, resizes, NMS, ...)
count 0.
Ops go to a part by their name scope: a Keras layer opens a scope named
after its `.name` around its `call`. Layers that override `__call__` open no
scope (Model Garden's detection generators), so their ops count as `other`.
"""

import contextlib
import ctypes
import logging
import os
import sys
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import tensorflow as tf
import tf_keras

# Model Garden registers the FLOPs statistics of Einsum (its attention
# layers) in this module: importing it makes our counts equal its own.
from official.core import train_utils  # pylint: disable=unused-import
from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-direct-tensorflow-import

OTHER = 'other'

Scopes = Union[Sequence[str], Mapping[str, Sequence[str]]]


def model_parts(model: tf_keras.Model) -> dict[str, list[tf_keras.layers.Layer]]:
  """The model's top-level parts: layers held in its public attributes.

  Args:
    model: A subclassed Keras model.

  Returns:
    {attribute name: [layers]} in attribute definition order (a private
    `_name` exposed as a property `name` counts as `name`); a list, tuple
    or dict of layers (Keras wraps them as ListWrapper/DictWrapper) gives all
    its layers under one name. Attributes holding no layer are left out.
  """
  parts = {}
  for name, value in vars(model).items():
    if isinstance(value, tf_keras.layers.Layer):
      candidates = [value]
    elif isinstance(value, dict):
      # Not `Mapping`: the ABC check misses Keras' DictWrapper proxy at times.
      candidates = list(value.values())
    elif isinstance(value, (list, tuple)):
      candidates = list(value)
    else:
      continue
    layers = [layer for layer in candidates
              if isinstance(layer, tf_keras.layers.Layer) and layer is not model]
    if not layers:
      continue
    if name.startswith('_'):
      # A private attribute behind a public read-only property (RetinaNet's
      # `_backbone` behind `backbone`) is a part under the property's name;
      # other private ones are Keras' bookkeeping.
      name = name[1:]
      if (name.startswith('_') or
          not isinstance(getattr(type(model), name, None), property) or
          getattr(model, name) is not value):
        continue
    parts[name] = layers
  if OTHER in parts:
    raise ValueError(f'the model has a part named {OTHER!r}, the name the '
                     'profile gives to what no part owns')
  return parts


def _parameters(layer: tf_keras.layers.Layer) -> list[tf.Variable]:
  """The layer's variables created trainable, whether or not it is frozen."""
  return [v for v in layer.weights if v.trainable]


def count_parameters(model: tf_keras.Model) -> dict[str, Any]:
  """Trainable parameters, in total and per top-level part.

  A parameter is a variable created trainable, also in a frozen layer (a
  frozen stem, frozen BN's scale and bias: the papers count them); BN
  statistics are not. A variable shared by several parts counts once, for
  the first of them in attribute order; parameters of no part count as
  `other`.

  Args:
    model: A built model (its variables exist).

  Returns:
    {'trainable_parameters': int, 'parts': {part: int, ..., 'other': int}};
    the parts sum to the total.

  Raises:
    ValueError: the model has no variables yet.
  """
  if not model.variables:
    raise ValueError(f'model {model.name!r} has no variables yet: call it '
                     'once before counting its parameters')
  trainable = {v.ref(): v.shape.num_elements() for v in _parameters(model)}
  seen = set()
  counts = {}
  for name, layers in model_parts(model).items():
    counts[name] = 0
    for layer in layers:
      for variable in _parameters(layer):
        ref = variable.ref()
        if ref in trainable and ref not in seen:
          seen.add(ref)
          counts[name] += trainable[ref]
  counts[OTHER] = sum(n for ref, n in trainable.items() if ref not in seen)
  return {'trainable_parameters': sum(trainable.values()), 'parts': counts}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """Silences the profiler: its C++ stdout and TF's deprecation log lines."""
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel(logging.ERROR)
  sys.stdout.flush()
  saved = os.dup(1)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 1)
    yield
  finally:
    # C stdio buffers what the profiler printed: flush it into /dev/null.
    try:
      ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
      pass
    os.dup2(saved, 1)
    os.close(saved)
    os.close(devnull)
    logger.setLevel(level)


def _profile_nodes(node) -> Iterator[Any]:
  yield node
  for child in node.children:
    yield from _profile_nodes(child)


def _group_of(op_name: str, scope_to_group: Mapping[str, str]) -> str:
  # The outermost matching scope wins: a part's nested layers may share names
  # with other parts' layers, its own scope comes first in the op name.
  for component in op_name.split('/'):
    group = scope_to_group.get(component)
    if group is not None:
      return group
  return OTHER


def count_flops(fn: Callable[[tf.Tensor], Any], input_spec: tf.TensorSpec,
                scopes: Scopes) -> dict[str, Any]:
  """FLOPs of one call of `fn`, in total and per name-scope group.

  Counted as Model Garden counts them (see the module docstring): 2 FLOPs per
  multiply-add, as TensorFlow's profiler counts.

  Args:
    fn: The inference call, `images [B, H, W, C] -> outputs`, e.g.
      `lambda x: model.call(x, image_shape=..., training=False)`.
    input_spec: A fully defined spec of the input, e.g.
      `tf.TensorSpec([1, 512, 512, 3], tf.float32)`.
    scopes: Name scopes to group ops by: a sequence of scope names (each its
      own group), or {group: [scope names]} (a part's layer names). An op
      belongs to the group of the first scope in its name that is listed; if
      two groups list one scope, the first group gets it.

  Returns:
    {'flops': int, 'parts': {group: int, ..., 'other': int}}; the groups sum
    to the total.

  Raises:
    ValueError: `input_spec` is not fully defined (the profiler would skip
      ops of unknown shape).
  """
  if not input_spec.shape.is_fully_defined():
    raise ValueError(f'input_spec {input_spec} must have a fully defined '
                     'shape: FLOPs of ops with unknown shapes are not counted')
  groups = ({name: [name] for name in scopes}
            if not isinstance(scopes, Mapping) else dict(scopes))
  if OTHER in groups:
    raise ValueError(f'{OTHER!r} is the group of unmatched ops; rename it')
  scope_to_group = {}
  for group, names in groups.items():
    for scope in names:
      scope_to_group.setdefault(scope, group)

  concrete = tf.function(fn).get_concrete_function(input_spec)
  frozen, _ = convert_to_constants.convert_variables_to_constants_v2_as_graph(
      concrete)
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  with _quiet():
    profile = tf.compat.v1.profiler.profile(
        graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd='scope',
        options=options)

  flops = {group: 0 for group in groups}
  flops[OTHER] = 0
  for node in _profile_nodes(profile):
    if node.float_ops:
      flops[_group_of(node.name, scope_to_group)] += node.float_ops
  if sum(flops.values()) != profile.total_float_ops:
    raise RuntimeError(f'per-op FLOPs sum to {sum(flops.values())}, the '
                       f'profiler total is {profile.total_float_ops}')
  return {'flops': int(profile.total_float_ops), 'parts': flops}


def profile_model(model: tf_keras.Model, fn: Callable[[tf.Tensor], Any],
                  input_spec: tf.TensorSpec) -> dict[str, Any]:
  """FLOPs and trainable parameters of `model`, per top-level part.

  Args:
    model: The model `fn` calls.
    fn: Its inference call, `images -> outputs` (see `count_flops`).
    input_spec: A fully defined `[B, H, W, C]` input spec.

  Returns:
    {'trainable_parameters': int, 'flops': int, 'parts': {part:
    {'trainable_parameters': int, 'flops': int}, ..., 'other': {...}},
    'input_size': [H, W]}.
  """
  parts = model_parts(model)
  # FLOPs first: tracing `fn` creates the variables of an unbuilt model.
  flops = count_flops(fn, input_spec, {
      name: [layer.name for layer in layers] for name, layers in parts.items()})
  params = count_parameters(model)
  return {
      'trainable_parameters': params['trainable_parameters'],
      'flops': flops['flops'],
      'parts': {name: {'trainable_parameters': params['parts'][name],
                       'flops': flops['parts'][name]}
                for name in [*parts, OTHER]},
      'input_size': [int(d) for d in input_spec.shape[1:3]],
  }


def format_table(result: Mapping[str, Any]) -> str:
  """A `profile_model` result as a text table: part, params, GFLOPs, share."""
  height, width = result['input_size']
  total_flops = result['flops']
  rows = [(name, part['trainable_parameters'], part['flops'])
          for name, part in result['parts'].items()]
  rows.append(('total', result['trainable_parameters'], total_flops))
  size = max(len('part'), *(len(name) for name, _, _ in rows))
  lines = [f'input {height}x{width}; FLOPs: 2 per multiply-add',
           f'{"part":<{size}}  {"params (M)":>10}  {"GFLOPs":>10}  '
           f'{"share":>6}']
  for i, (name, params, flops) in enumerate(rows):
    if i == len(rows) - 1:
      lines.append('-' * len(lines[1]))
    share = flops / total_flops if total_flops else 0.0
    lines.append(f'{name:<{size}}  {params / 1e6:>10.3f}  {flops / 1e9:>10.3f}  '
                 f'{share:>6.1%}')
  return '\n'.join(lines)


def profile_experiment(config, size: Optional[Sequence[int]] = None
                       ) -> dict[str, Any]:
  """`profile_model` of an experiment's model at `size` (default: the eval
  size padded to the top stride), through its family's inference call."""
  from tf_mtdet import families  # pylint: disable=g-import-not-at-top
  family = families.get(config)
  model = family.build_model()
  if size is None:
    size = family.eval_input_size()
  height, width = (int(s) for s in size)
  info = tf.constant([[[height, width], [height, width], [1.0, 1.0],
                       [0.0, 0.0]]], tf.float32)
  fn = lambda images: family.call_inference(model, images, info)
  return profile_model(model, fn, tf.TensorSpec([1, height, width, 3],
                                                tf.float32))
