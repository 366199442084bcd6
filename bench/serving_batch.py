"""Benchmark: latency and throughput of fixed-batch SavedModel exports.

Exports the model once per batch size with static shapes (`export
--batch-size N --input-size H W`, `serving_default` only), loads each
SavedModel, feeds its `serving_default` signature N generated images of
H x W (the batch-8 signature gets 8 images) and prints, per batch size, the
median latency of one call and the throughput (images / s = N / median).
The input size is the config's eval size unless `--input-size` says
otherwise.

  python bench/serving_batch.py [--config NAME|YAML] [--checkpoint DIR]
      [--batches 1 4 8] [--runs 20] [--input-size H W] [--dynamic] [--json]

Without `--checkpoint` the model has random weights (the timing of a
fixed-size detector does not depend on them; the number of boxes NMS keeps
can). Numbers depend on the machine and on what else runs on it.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

DEFAULT_CONFIG = 'mask_rcnn/mask_rcnn_quickstart_shapes'


def measure(config_name: str, checkpoint, batches, runs: int, input_size,
            overrides=(), dynamic: bool = False) -> list:
  """Rows of {batch, median_ms, min_ms, images_per_s, export_s}; with
  `dynamic` one dynamic-batch export serves every batch size."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow as tf
  from tf_mtdet import families
  from tf_mtdet.config import experiment
  from tf_mtdet.serving import export
  from tf_mtdet.serving import exporter
  from tf_mtdet.serving import warmup
  from tf_mtdet.training import evaluate
  from tf_mtdet.training import train
  # pylint: enable=g-import-not-at-top

  config = experiment.load_config(config_name, [
      *overrides, 'train_data.label_map='])
  family = families.get(config)
  input_size = tuple(input_size or family.eval_input_size())
  config = exporter.fixed_input_config(config, input_size)
  family = families.get(config)
  if checkpoint:
    model, _ = evaluate.load_model(config, checkpoint, family)
  else:
    model = train.build_model(config, family)
  image = warmup.generated_image(*input_size)
  rows = []
  with tempfile.TemporaryDirectory() as workdir:
    signature = None
    for batch in batches:
      if signature is None or not dynamic:
        module = export.ServingModule(
            model, family, family.build_parser(config.eval_data),
            batch_size=None if dynamic else batch, input_size=input_size)
        start = time.monotonic()
        path = export.export_saved_model(
            module, os.path.join(workdir, f'batch{batch}'),
            signatures=['serving_default'], warmup=False)
        export_s = time.monotonic() - start
        signature = tf.saved_model.load(path).signatures['serving_default']
      images = tf.constant(np.repeat(image[np.newaxis], batch, axis=0))
      for _ in range(2):  # First runs: kernel selection, memory pools.
        signature(inputs=images)
      times = []
      for _ in range(runs):
        start = time.perf_counter()
        outputs = signature(inputs=images)
        outputs['num_detections'].numpy()
        times.append(time.perf_counter() - start)
      median = statistics.median(times)
      rows.append({'batch': batch, 'median_ms': 1000 * median,
                   'min_ms': 1000 * min(times),
                   'images_per_s': batch / median, 'export_s': export_s,
                   'input_size': list(input_size)})
  return rows


def format_table(rows) -> str:
  lines = ['| batch | latency median (min) | throughput |',
           '|---|---|---|']
  for row in rows:
    lines.append(f'| {row["batch"]} | {row["median_ms"]:.0f} ms '
                 f'({row["min_ms"]:.0f}) | {row["images_per_s"]:.1f} '
                 'images/s |')
  return '\n'.join(lines)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=DEFAULT_CONFIG)
  parser.add_argument('--checkpoint', help='model dir or prefix (default: '
                      'random weights)')
  parser.add_argument('--batches', type=int, nargs='+', default=[1, 4, 8])
  parser.add_argument('--runs', type=int, default=20)
  parser.add_argument('--input-size', type=int, nargs=2,
                      metavar=('HEIGHT', 'WIDTH'))
  parser.add_argument('--set', action='append', default=[],
                      metavar='KEY=VALUE')
  parser.add_argument('--dynamic', action='store_true',
                      help='one dynamic-batch export fed every batch size '
                      '(the default export) instead of one static export each')
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()
  rows = measure(args.config, args.checkpoint, args.batches, args.runs,
                 args.input_size, args.set, args.dynamic)
  if args.json:
    print(json.dumps(rows))
  else:
    size = rows[0]['input_size']
    kind = 'dynamic batch' if args.dynamic else 'static batch'
    print(f'{args.config}, {kind}, input {size[0]}x{size[1]}, '
          f'{args.runs} calls per batch size, serving_default')
    print(format_table(rows))
  return 0


if __name__ == '__main__':
  sys.exit(main())
