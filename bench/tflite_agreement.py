"""Benchmark: TFLite exports against the SavedModel, per quantisation.

Exports a single-shot checkpoint as a SavedModel (`image_bytes`) and as TFLite
with each `--quantize` (none, fp16, dynamic), runs every image through each
(`predict_image`: the interpreter with its host-side resize and decode, the
SavedModel through its signature) and prints per quantisation: the file
size, how many of the SavedModel's detections scoring >= `--min-score` the
TFLite model finds (same class, box IoU >= 0.9, score within 0.02: the
agreement `tests/serving/test_tflite.py` asks of `none`), the largest score
difference of the matched ones, and the median latency per image against the
SavedModel's.

  python bench/tflite_agreement.py --config ivanet/ivanet_tiny_shapes \\
      --checkpoint workdir/model --images workdir/data/shapes_val/images \\
      [--num 20] [--quantize none fp16 dynamic] [--min-score 0.3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _timed(runner, images, min_score):
  """Detections per image and the median seconds per image."""
  # pylint: disable-next=g-import-not-at-top
  from tf_mtdet.serving import predict
  predict.predict_image(runner, images[0], 0.0)  # First run.
  results, times = [], []
  for image in images:
    start = time.perf_counter()
    results.append(predict.predict_image(runner, image, min_score))
    times.append(time.perf_counter() - start)
  return results, statistics.median(times)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--checkpoint', required=True)
  parser.add_argument('--images', required=True,
                      help='folder or glob of images')
  parser.add_argument('--num', type=int, default=20)
  parser.add_argument('--quantize', nargs='+',
                      default=['none', 'fp16', 'dynamic'])
  parser.add_argument('--min-score', type=float, default=0.3)
  parser.add_argument('--set', action='append', default=[],
                      metavar='KEY=VALUE')
  args = parser.parse_args()

  # pylint: disable=g-import-not-at-top
  from tf_mtdet import families
  from tf_mtdet.config import experiment
  from tf_mtdet.serving import exporter
  from tf_mtdet.serving import predict
  from tf_mtdet.serving import tflite
  from tf_mtdet.training import evaluate
  # pylint: enable=g-import-not-at-top

  config = experiment.load_config(args.config, args.set)
  images = predict.list_images(args.images)[:args.num]
  model, _ = evaluate.load_model(config, args.checkpoint,
                                 families.get(config))
  with tempfile.TemporaryDirectory() as workdir:
    saved = exporter.export_checkpoint(
        config, args.checkpoint, os.path.join(workdir, 'saved'),
        signatures=['image_bytes'], warmup=False)
    reference, reference_s = _timed(predict.load_model(saved), images,
                                    args.min_score)
    total = sum(len(r['scores']) for r in reference)
    print(f'{args.config}: {len(images)} images, {total} SavedModel '
          f'detections >= {args.min_score}; SavedModel median '
          f'{1000 * reference_s:.1f} ms/image')
    print('| --quantize | size | found (class, IoU >= 0.9, score +-0.02) '
          '| max score diff | latency | vs SavedModel |')
    print('|---|---|---|---|---|---|')
    for quantize in args.quantize:
      path = tflite.export_tflite(config, args.checkpoint,
                                  os.path.join(workdir, quantize),
                                  quantize=quantize, model=model)
      found, seconds = _timed(predict.load_model(path), images, 0.0)
      missed, diffs = 0, []
      for ref, lite in zip(reference, found):
        top = len(ref['scores'])
        missed += len(tflite.unmatched_detections(ref, lite, top=top))
        diffs += [d for d in tflite.score_differences(ref, lite, top=top)
                  if d is not None]
      print(f'| {quantize} | {os.path.getsize(path) / 2**20:.2f} MiB | '
            f'{total - missed}/{total} | '
            f'{max(diffs, default=0.0):.4f} | {1000 * seconds:.1f} ms | '
            f'{seconds / reference_s:.2f}x |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
