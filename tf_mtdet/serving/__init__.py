"""Serving: SavedModel export for TF Serving, local request adapters, predict.

* `export`: `ServingModule` (signatures `serving_default`, `image_bytes`,
  `tf_example`; dynamic or static shapes) and `export_saved_model`
  (versioned, atomic, with TF Serving warm-up requests from `warmup`).
* `adapters`: TF Serving's REST and gRPC `Predict` semantics on a locally
  loaded SavedModel (tests, debugging without the model server binary).
* `tflite`: TFLite export of the single-shot families and its interpreter
  runner.
* `predict`: image files, folders or globs through a SavedModel or TFLite
  model; pictures, JSON and COCO results out.
* `visualize`: boxes, masks and labels drawn on an image (numpy and OpenCV
  only).

Names are resolved on first use so `visualize` works without importing
TensorFlow.
"""

import importlib

_EXPORTS = {
    'ServingModule': 'export',
    'export_saved_model': 'export',
    'read_label_map': 'export',
    'paste_box_masks': 'export',
    'ServingError': 'adapters',
    'load': 'adapters',
    'predict_rest': 'adapters',
    'predict_grpc': 'adapters',
    'predict_image': 'predict',
    'predict_files': 'predict',
    'export_tflite': 'tflite',
    'write_prediction': 'predict',
    'draw_detections': 'visualize',
}


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module = importlib.import_module(f'{__name__}.{_EXPORTS[name]}')
  return getattr(module, name)


__all__ = sorted(_EXPORTS)
