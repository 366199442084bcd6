"""AutoGraph leaves model code as written and still converts the pipelines.

Pins TensorFlow's private `autograph.core.config.CONVERSION_RULES` and
`conversion.is_allowlisted`, which `tf_mtdet.utils.autograph_rules` relies
on: an upgrade that moves them fails here instead of silently costing the
conversion time again.
"""

import tensorflow as tf
from official.vision.modeling.layers import detection_generator
from official.vision.ops import preprocess_ops
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import conversion

from tf_mtdet import modeling  # noqa: F401  # installs the rules
from tf_mtdet.data import parser
from tf_mtdet.modeling.necks import msfem
from tf_mtdet.utils import autograph_rules


def _needs_autograph(x):
  # A Python `if` on a tensor: a graph error unless AutoGraph rewrites it.
  if tf.reduce_sum(x) > 0:
    return x + 1.0
  return x - 1.0


def test_model_code_is_left_as_written():
  assert conversion.is_allowlisted(msfem.MSFEM(8, 1).call)
  assert conversion.is_allowlisted(
      detection_generator.MultilevelDetectionGenerator().call)


def test_pipelines_and_user_code_are_still_converted():
  assert not conversion.is_allowlisted(preprocess_ops.resize_and_crop_image_v2)
  assert not conversion.is_allowlisted(parser.DetectionParser._parse_train_data)
  assert not conversion.is_allowlisted(_needs_autograph)
  # And converting still works for them: the `if` becomes a tf.cond.
  fn = tf.function(lambda x: _needs_autograph(x))
  assert float(fn(tf.constant([1.0]))[0]) == 2.0
  assert float(fn(tf.constant([-1.0]))[0]) == -2.0


def test_rules_come_first_once():
  autograph_rules.install()
  autograph_rules.install()
  names = [str(rule) for rule in autograph_config.CONVERSION_RULES]
  ours = [f'DoNotConvert rule for {p}' for p in autograph_rules.MODEL_PACKAGES]
  assert names[:len(ours)] == ours
  assert len(names) == len(set(names))
