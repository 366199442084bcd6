"""The quickstart: the whole platform end to end on generated data, on CPU.

make shapes data (train / val / held-out test) -> TFRecords -> train a tiny
config of any family (default: the tiny Mask R-CNN) -> evaluation (the
metrics the config names) -> SavedModel export -> prediction picture on a
held-out image. Everything lands in `workdir`.
"""

import json
import os
import time
from typing import Any, Optional

from tf_mtdet.config import experiment
from tf_mtdet.config import zoo
from tf_mtdet.data import builder
from tf_mtdet.serving import exporter
from tf_mtdet.serving import predict
from tf_mtdet.training import evaluate
from tf_mtdet.training import train

# Shipped in the package, so the quickstart runs from an installed wheel too.
# The tiny Mask R-CNN with the quickstart's recipe (Adam, half-size input).
DEFAULT_CONFIG = 'mask_rcnn/mask_rcnn_quickstart_shapes'
# Length and data of a run whose config's schedule names neither.
DEFAULT_STEPS = 600
DEFAULT_TRAIN_IMAGES = 300
# Metrics shown on the quickstart's summary lines, when the config has them.
_HEADLINES = (('box ', ('AP', 'AP50', 'AP75')),
              ('mask', ('mask_AP', 'mask_AP50')),
              ('VOC ', ('voc07_mAP@0.5', 'voc_mAP@0.5')),
              ('seg ', ('mIoU',)))


def _log(message: str) -> None:
  print(f'[quickstart] {message}', flush=True)


def _dataset(workdir: str, split: str, num_images: int, seed: int) -> str:
  """Generates a shapes split and its TFRecords; returns the record prefix."""
  src = os.path.join(workdir, 'data', f'shapes_{split}')
  prefix = os.path.join(workdir, 'records', f'shapes_{split}')
  if not os.path.exists(src):
    builder.make_shapes(src, num_images, seed=seed)
  if not os.path.exists(prefix + '-summary.json'):
    log = builder.ProblemLog(strict=True)
    source = builder.read_coco(os.path.join(src, 'annotations.json'),
                               os.path.join(src, 'images'), log,
                               need_segmentation=True)
    builder.build_tfrecords(
        source, prefix, 1,
        builder.EncodeOptions(include_masks=True, semantic=True,
                              category_names={
            c.id: c.name for c in source.categories}),
        log, num_workers=os.cpu_count() or 1, progress_stream=None)
  return prefix


def run(workdir: str, train_images: Optional[int] = None,
        steps: Optional[int] = None, val_images: int = 50, verbose: int = 2,
        config: str = DEFAULT_CONFIG) -> dict[str, Any]:
  """Runs the quickstart of a tiny config; returns metrics and paths.

  Args:
    workdir: Where data, records, model, export and the picture land.
    train_images: Generated training images (None: the config's
      `schedule.num_train_examples`, else 300).
    steps: Training steps (None: the config's `schedule.total_steps`, else
      600).
    val_images: Generated held-out images the model is evaluated on.
    verbose: Keras `fit` verbosity (0, 1 or 2).
    config: A tiny config's zoo name or YAML path.

  Returns:
    Dict with `metrics`, `export` (the SavedModel version directory),
    `picture` (the prediction PNG) and `seconds`.
  """
  config_path = zoo.resolve(config)
  base = experiment.load_config(config_path)
  train_images = (train_images or base.schedule.num_train_examples or
                  DEFAULT_TRAIN_IMAGES)
  steps = steps or base.schedule.total_steps or DEFAULT_STEPS
  start = time.time()
  _log(f'generating shapes data and TFRecords in {workdir}')
  train_prefix = _dataset(workdir, 'train', train_images, seed=0)
  val_prefix = _dataset(workdir, 'val', val_images, seed=1)
  test_dir = os.path.join(workdir, 'data', 'shapes_test')
  if not os.path.exists(test_dir):
    builder.make_shapes(test_dir, 1, seed=2)

  steps_per_epoch = max(1, steps // 6)
  # Warmup must stay shorter than a short run.
  warmup = min(base.schedule.warmup_steps, steps // 4)
  config = experiment.load_config(config_path, [
      f'schedule.warmup_steps={warmup}',
      f'train_data.input_path={train_prefix}-*.tfrecord',
      f'train_data.label_map={train_prefix}-label_map.json',
      f'eval_data.input_path={val_prefix}-*.tfrecord',
      f'eval_data.annotation_file={val_prefix}-annotations.json',
      f'schedule.num_train_examples={train_images}',
      f'schedule.total_steps={steps}',
      f'schedule.steps_per_epoch={steps_per_epoch}',
  ])
  model_dir = os.path.join(workdir, 'model')
  _log(f'training {steps} steps (checkpoints and TensorBoard logs in '
       f'{model_dir})')
  train.train(config, model_dir, verbose=verbose)

  _log(f'evaluating on {val_images} held-out validation images')
  results_json = os.path.join(workdir, 'coco_results.json')
  metrics = evaluate.evaluate(config, model_dir, results_path=results_json)
  for title, keys in _HEADLINES:
    shown = [f'{k} {metrics[k]:.3f}' for k in keys if k in metrics]
    if shown:
      _log(f'{title} ' + '  '.join(shown))

  export_dir = os.path.join(workdir, 'export')
  version_dir = exporter.export_checkpoint(config, model_dir, export_dir)
  _log(f'exported SavedModel {version_dir}')

  image = os.path.join(test_dir, 'images', 'shapes_000000.jpg')
  picture = os.path.join(workdir, 'prediction.png')
  detections = predict.predict_image(export_dir, image, score_threshold=0.3)
  predict.write_prediction(image, detections, picture,
                           os.path.join(workdir, 'prediction.json'))
  _log(f'{len(detections["scores"])} detection(s) on held-out {image} drawn '
       f'to {picture}')
  summary = {'metrics': metrics, 'export': version_dir, 'picture': picture,
             'seconds': round(time.time() - start, 1)}
  with open(os.path.join(workdir, 'quickstart.json'), 'w') as f:
    json.dump(summary, f, indent=1, sort_keys=True)
  _log(f'done in {summary["seconds"]:.0f} s')
  return summary
