"""Benchmark: SavedModel latency, ours vs Model Garden's DetectionModule.

The same architecture (our config mirrored into Model Garden's own model
config: `MaskRCNN` for a two-stage config, `RetinaNet` for a single-shot one)
exported both ways (ours through its family, Model Garden's through its
`MaskRCNNTask` / `RetinaNetTask` `DetectionModule`), then each SavedModel is
loaded in its own process and its `serving_default` signature (uint8 image
tensor) is timed on the same image, which both fit into the same padded input
size. Ours returns original-image boxes and class names (and optionally
full-image masks); Model Garden's returns resized-image boxes. Prints median
latency, peak RSS and the ratio (ours / Model Garden; goal <= 1.0).

  python bench/inference.py [--config NAME|YAML] [--model-id 50] [--size 512]
      [--runs 20] [--mg-batch dynamic|N]

Both SavedModels have a dynamic batch dimension by default (ours always;
Model Garden's export CLI's default), so the same graph kind is timed;
`--mg-batch 1` exports Model Garden's with a static batch of 1.

With `--against BASE.yaml`, compares our `--config` export to our BASE
config's export instead of Model Garden's.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position


def _export(impl: str, args, export_dir: str) -> int:
  """Exports the model; returns its inference FLOPs at the bench size."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from official.core import config_definitions as cfg  # pylint: disable=g-import-not-at-top
  from official.vision.serving import export_saved_model_lib  # pylint: disable=g-import-not-at-top
  from tf_mtdet import families  # pylint: disable=g-import-not-at-top
  from tf_mtdet.serving import export as export_lib  # pylint: disable=g-import-not-at-top
  from tf_mtdet.training import train  # pylint: disable=g-import-not-at-top

  tf_keras.utils.set_random_seed(0)
  config_path = args.against if impl == 'base' else args.config
  config = common.bench_config(config_path, args.set, args.pattern, args.size,
                               1, args.model_id)
  if impl in ('ours', 'base'):
    family = families.get(config)
    if args.full_image_masks and not family.include_mask:
      raise ValueError(f'--full-image-masks: {config.model.type} model of '
                       f'{config_path} has no mask head')
    model = train.build_model(config, family)
    flops = common.inference_flops(model, args.size)
    module = export_lib.ServingModule(
        model, family,
        family.build_parser(config.eval_data),
        {1: 'circle', 2: 'square', 3: 'triangle'},
        full_image_masks=args.full_image_masks)
    export_lib.export_saved_model(module, export_dir, version=1)
  else:
    flops = common.inference_flops(
        common.model_garden_task(config).build_model(), args.size)
    params = cfg.ExperimentConfig(task=common.model_garden_task_config(config))
    export_saved_model_lib.export_inference_graph(
        input_type='image_tensor',
        batch_size=None if args.mg_batch == 'dynamic' else int(args.mg_batch),
        input_image_size=[args.size, args.size], params=params,
        checkpoint_path=None, export_dir=export_dir,
        export_saved_model_subdir='1')
  return flops


def _child(out_path: str, args) -> None:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  export_dir = os.path.join(args.workdir, args.impl)
  if args.phase == 'export':
    flops = _export(args.impl, args, export_dir)
    with open(out_path, 'w') as f:
      json.dump({'flops': flops}, f)
    return
  fn = tf.saved_model.load(os.path.join(export_dir, '1')).signatures[
      'serving_default']
  image = np.asarray(Image.open(args.image).convert('RGB'))[None]
  name = list(fn.structured_input_signature[1])[0]
  times = []
  for i in range(args.runs + 3):
    start = time.perf_counter()
    out = fn(**{name: tf.constant(image)})
    _ = {k: v.numpy() for k, v in out.items()}
    if i >= 3:
      times.append(time.perf_counter() - start)
  with open(out_path, 'w') as f:
    json.dump({'median_s': statistics.median(times), 'min_s': min(times),
               'peak_rss_mib': common.peak_rss_mib()}, f)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default=common.BASELINE,
                 help='config name (e.g. retinanet/retinanet_r50_fpn_1x_coco) '
                 'or YAML path')
  p.add_argument('--set', action='append', default=[])
  p.add_argument('--model-id', type=int, default=50)
  p.add_argument('--size', type=int, default=512)
  p.add_argument('--runs', type=int, default=20)
  p.add_argument('--full-image-masks', action='store_true')
  p.add_argument('--mg-batch', default='dynamic',
                 help="Model Garden's exported batch dimension: 'dynamic' "
                 '(its export CLI default, and ours) or a static size')
  p.add_argument('--against', help='compare with this config of ours '
                 'instead of Model Garden')
  p.add_argument('--child', help=argparse.SUPPRESS)
  p.add_argument('--impl', help=argparse.SUPPRESS)
  p.add_argument('--phase', help=argparse.SUPPRESS)
  p.add_argument('--pattern', help=argparse.SUPPRESS)
  p.add_argument('--workdir', help=argparse.SUPPRESS)
  p.add_argument('--image', help=argparse.SUPPRESS)
  args = p.parse_args()
  common.resolve_configs(p, args)
  if args.runs < 1:
    p.error('--runs must be >= 1')
  if args.child:
    _child(args.child, args)
    return 0
  with tempfile.TemporaryDirectory() as tmp:
    pattern = common.make_shapes_records(tmp, num_images=2)
    image = os.path.join(tmp, 'shapes', 'images', 'shapes_000000.jpg')
    base = ['--config', args.config, '--size', str(args.size), '--runs',
            str(args.runs), '--pattern', pattern, '--workdir', tmp,
            '--image', image, '--model-id', str(args.model_id),
            '--mg-batch', args.mg_batch]
    base += ['--full-image-masks'] if args.full_image_masks else []
    for s in args.set:
      base += ['--set', s]
    reference = 'base' if args.against else 'mg'
    if args.against:
      base += ['--against', args.against]
    results = {}
    for impl in (reference, 'ours'):
      exported = common.run_child(
          __file__, [*base, '--impl', impl, '--phase', 'export'])
      results[impl] = common.run_child(
          __file__, [*base, '--impl', impl, '--phase', 'serve'])
      results[impl].update(exported)
  print(f'SavedModel serving_default latency, {os.path.basename(args.config)}'
        f' with ResNet-{args.model_id}, a 256x320 image fitted into '
        f'{args.size}x{args.size}, batch 1, {args.runs} timed calls, '
        f'full-image masks {"on" if args.full_image_masks else "off"}, '
        f'Model Garden batch dimension {args.mg_batch}, '
        f'{os.cpu_count()} CPUs')
  names = {'ours': os.path.basename(args.config),
           reference: (os.path.basename(args.against) if args.against else
                       'model_garden')}
  for impl in ('ours', reference):
    r = results[impl]
    print(f'{names[impl]:>45}: median {1000 * r["median_s"]:.0f} ms (min '
          f'{1000 * r["min_s"]:.0f}), peak RSS {r["peak_rss_mib"]:.0f} MiB')
  print(common.ratio_line(names, results, reference, 'latency'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
