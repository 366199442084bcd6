"""Norm switches of `norm_activation` reach every batch norm layer of our own
necks, heads and extra levels (the backbones are Model Garden's or tested
with their module).

One table row per switch: the override that turns it on and what each batch
norm layer must then show. A frozen-BN switch adds a row (e.g.
`'frozen_bn': lambda bn: not bn.trainable`).
"""

import pytest
import tensorflow as tf

from official.vision.modeling.decoders import factory as decoder_factory

from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.tools import profiling

SWITCHES = {
    'use_sync_bn': lambda bn: bn.synchronized,
}

# Tiny models holding our parts with batch norm: IvaNet's LTD neck and SSD
# extra levels; DATNet's dense heads, res5 heads and (on SA-FPN, which holds
# BU-FPN) the Mask R-CNN heads. CoMask's MSFEM neck is built on its own.
MODELS = [
    ('ivanet/ivanet_tiny_shapes', []),
    ('datnet/datnet_tiny_shapes',
     ['model.two_stage.decoder.type=sa_fpn',
      'model.two_stage.decoder.sa_fpn.num_filters=64']),
]


def _is_batch_norm(module) -> bool:
  return hasattr(module, 'moving_variance') and hasattr(module,
                                                        'synchronized')


def _norms_outside_backbone(model) -> dict[str, list]:
  """{part: [batch norm layers]} of every top-level part but the backbone."""
  norms = {}
  for part, layers in profiling.model_parts(model).items():
    if part == 'backbone':
      continue
    found = [m for layer in layers for m in (layer, *layer.submodules)
             if _is_batch_norm(m)]
    if found:
      norms[part] = found
  return norms


def _config(name, overrides, switch, on):
  kind = experiment.load_config(name).model.type
  return experiment.load_config(name, [
      *overrides, 'train_data.label_map=',
      f'model.{kind}.norm_activation.{switch}={str(on).lower()}'])


def _failing(norms, holds):
  return {part: [bn.name for bn in layers if not holds(bn)]
          for part, layers in norms.items()
          if not all(holds(bn) for bn in layers)}


@pytest.mark.parametrize('switch', sorted(SWITCHES))
@pytest.mark.parametrize('name,overrides', MODELS)
def test_norm_switch_reaches_every_batch_norm_of_our_parts(
    name, overrides, switch):
  holds = SWITCHES[switch]
  family = families.get(_config(name, overrides, switch, True))
  model = family.build_model()
  family.build_weights(model)  # heads that build their layers lazily
  norms = _norms_outside_backbone(model)
  assert sum(len(v) for v in norms.values()) >= 4, norms
  assert not _failing(norms, holds)


@pytest.mark.parametrize('switch', sorted(SWITCHES))
def test_norm_switch_reaches_the_msfem_neck(switch):
  holds = SWITCHES[switch]
  for on in (True, False):
    config = _config('comask/comask_tiny_shapes', [], switch, on)
    model_cfg = config.model.two_stage
    specs = {str(l): tf.TensorShape([None, 64 // 2**l, 64 // 2**l, 8])
             for l in range(2, 6)}
    neck = decoder_factory.build_decoder(specs, model_cfg)
    norms = [m for m in neck.submodules if _is_batch_norm(m)]
    assert norms
    # Off: none holds (the check tells the two states apart).
    assert [holds(bn) for bn in norms] == [on] * len(norms)
