"""Dataset builders: COCO JSON / Pascal VOC / generated shapes -> TFRecord shards.

Names are resolved on first use so `make-shapes` and the readers work without
importing TensorFlow (only the shard writer and the encoder need it).
"""

import importlib

_EXPORTS = {
    'read_coco': 'coco',
    'read_voc': 'voc',
    'make_shapes': 'shapes',
    'EncodeOptions': 'encode',
    'BuildError': 'records',
    'ProblemLog': 'records',
    'build_tfrecords': 'writer',
    'shard_paths': 'writer',
}


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module = importlib.import_module(f'{__name__}.{_EXPORTS[name]}')
  return getattr(module, name)


__all__ = sorted(_EXPORTS)
