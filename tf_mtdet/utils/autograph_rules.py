"""Which code AutoGraph rewrites: the input pipelines, not the models.

AutoGraph turns Python control flow on tensors into graph ops by rewriting
each function's source the first time a `tf.function` (or a subclassed Keras
layer) calls it, and every call of rewritten code then goes through its
wrappers. Our models and Model Garden's model code (layers, heads, losses,
the trainer's steps) have no Python control flow on tensors: their loops
run over Python values and their tensor branches are explicit `tf.cond` /
`tf.where`. Rewriting them is pure cost, paid again in every process: with
these rules the tiny CoMask trained on two replicas reaches its first step
9 s sooner and traces it 16 s faster (train, evaluate, export and serve:
203 -> 175 s on 2 CPU cores).

The input pipelines keep AutoGraph (Model Garden's `resize_and_crop_image_v2`
needs it), as does any user code: the rules name our model packages and
Model Garden's, nothing else. They are TensorFlow's own mechanism
(`autograph.core.config.CONVERSION_RULES`, where it lists `tf_keras` and
`numpy`); `tests/utils/test_autograph_rules.py` pins it, so an upgrade that
moves it fails a test instead of silently costing time.
"""

from tensorflow.python.autograph.core import config as autograph_config

# Packages whose functions AutoGraph leaves as written.
MODEL_PACKAGES = (
    'tf_mtdet.modeling',
    'tf_mtdet.families',
    'tf_mtdet.losses',
    'tf_mtdet.training',
    'tf_mtdet.serving',
    'official.vision.modeling',
    'official.vision.losses',
    'official.modeling',
    # Model Garden's box and anchor ops, which its parsers call too.
    'official.vision.ops.anchor',
    'official.vision.ops.box_matcher',
    'official.vision.ops.box_ops',
    'official.vision.ops.iou_similarity',
    'official.vision.ops.target_gather',
    'official.vision.utils.object_detection',
)


def install() -> None:
  """Puts the model packages' do-not-convert rules first (idempotent)."""
  present = {str(rule) for rule in autograph_config.CONVERSION_RULES}
  rules = tuple(autograph_config.DoNotConvert(package)
                for package in MODEL_PACKAGES)
  missing = tuple(rule for rule in rules if str(rule) not in present)
  if missing:
    autograph_config.CONVERSION_RULES = (
        missing + tuple(autograph_config.CONVERSION_RULES))
