"""`tf-mtdet` command line: parses flags and calls the library.

Heavy imports (TensorFlow) happen inside the subcommands so `--help` is instant.
"""

import argparse
import glob
import json
import os
import sys
import traceback
from typing import Optional, Sequence

from tf_mtdet import errors
from tf_mtdet.data import image_size
from tf_mtdet.utils import quiet


def _add_build_tfrecord(sub) -> None:
  p = sub.add_parser(
      'build-tfrecord',
      help='COCO JSON or Pascal VOC -> TFRecord shards + GT JSON + label map',
      description=(
          'Writes PREFIX-NNNNN-of-NNNNN.tfrecord shards with Model Garden '
          'feature keys, plus PREFIX-annotations.json (COCO ground truth, also '
          'for VOC sources), PREFIX-label_map.json and PREFIX-summary.json. '
          'Bad items are skipped, named on stderr and counted in the summary; '
          'with --strict the first one stops the build. No partial file is '
          'ever left behind.'))
  p.add_argument('--format', choices=('coco', 'voc'), required=True)
  p.add_argument('--annotations', help='COCO instances JSON (--format coco)')
  p.add_argument('--images', help='image directory (--format coco)')
  p.add_argument('--voc-root', help='VOC folder with Annotations/ and '
                 'JPEGImages/ (or annotations/ and images/) (--format voc)')
  p.add_argument('--split', help='VOC split file of image ids (default: all '
                 'XML files)')
  p.add_argument('--classes', help='VOC class names in id order, comma '
                 'separated (default: sorted names found in the XML files)')
  p.add_argument('--output', required=True, help='output path prefix')
  p.add_argument('--num-shards', type=int, default=1)
  p.add_argument('--num-workers', type=int, default=os.cpu_count() or 1,
                 help='encoding processes (default: number of CPUs)')
  p.add_argument('--include-masks', action='store_true',
                 help='write per-instance PNG masks (image/object/mask)')
  p.add_argument('--semantic', action='store_true',
                 help='write a per-image semantic class PNG painted from the '
                 'instances (image/segmentation/class/encoded)')
  p.add_argument('--voc-segmentation', action='append', default=[],
                 metavar='DIR',
                 help='(--format voc, repeatable) folder of semantic labels '
                 'by image id: VOC2012 SegmentationClass/<id>.png or SBD '
                 'cls/<id>.mat, searched in order; images without one get '
                 'an all-ignore (255) map, counted in the summary')
  p.add_argument('--box-masks', action='store_true',
                 help='instances without a segmentation (all of them for VOC) '
                 'get their box filled as a coarse mask (implies '
                 '--include-masks)')
  p.add_argument('--max-image-pixels', type=int,
                 default=image_size.DEFAULT_MAX_IMAGE_PIXELS,
                 help='skip images declaring more pixels (width x height, '
                 'read from the header before decoding) as image_too_large; '
                 '0 for no limit (default: %(default)s)')
  p.add_argument('--strict', action='store_true',
                 help='stop with an error at the first bad item')
  p.add_argument('--quiet', action='store_true', help='no progress line')
  p.set_defaults(func=_run_build_tfrecord)


def _run_build_tfrecord(args: argparse.Namespace) -> int:
  from tf_mtdet.data import builder  # pylint: disable=g-import-not-at-top

  log = builder.ProblemLog(strict=args.strict)
  needs_masks = args.include_masks or args.semantic
  if args.format == 'coco':
    if not args.annotations or not args.images:
      raise builder.BuildError('--format coco needs --annotations and --images')
    source = builder.read_coco(args.annotations, args.images, log,
                               need_segmentation=needs_masks,
                               box_masks=args.box_masks)
  else:
    if not args.voc_root:
      raise builder.BuildError('--format voc needs --voc-root')
    if needs_masks and not args.box_masks:
      raise builder.BuildError(
          'VOC annotations have boxes only: --include-masks/--semantic need '
          '--box-masks')
    classes = ([c.strip() for c in args.classes.split(',') if c.strip()]
               if args.classes else None)
    source = builder.read_voc(args.voc_root, log, split_file=args.split,
                              class_names=classes)
  if args.voc_segmentation:
    from tf_mtdet.data.builder import voc_segmentation  # pylint: disable=g-import-not-at-top
    if args.format != 'voc':
      raise builder.BuildError('--voc-segmentation needs --format voc')
    if args.semantic:
      raise builder.BuildError('--voc-segmentation writes the semantic map '
                               'from label files; drop --semantic')
    voc_segmentation.attach_label_files(source, args.voc_segmentation)
  options = builder.EncodeOptions(
      include_masks=args.include_masks or args.box_masks,
      semantic=args.semantic,
      box_masks=args.box_masks,
      category_names={c.id: c.name for c in source.categories},
      max_image_pixels=args.max_image_pixels,
      semantic_files=bool(args.voc_segmentation))
  result = builder.build_tfrecords(
      source, args.output, args.num_shards, options, log,
      num_workers=args.num_workers,
      progress_stream=None if args.quiet else sys.stderr)
  s = result.summary
  print(f'wrote {s["images"]} images, {s["instances"]} instances '
        f'({s["crowd"]} crowd) to {len(result.shards)} shard(s) '
        f'{args.output}-*.tfrecord; skipped {s["skipped_total"]} item(s)'
        + (f' {json.dumps(s["skipped"])}' if s['skipped_total'] else '')
        + (f'; {s["images_without_semantic_labels"]} image(s) without a '
           'semantic label (all ignore)'
           if 'images_without_semantic_labels' in s else '')
        + f'; summary: {result.summary_path}')
  return 0


def _add_verify_tfrecord(sub) -> None:
  p = sub.add_parser(
      'verify-tfrecord',
      help='read and decode every record of TFRecord shards; report per shard',
      description='Reads every record of the shards PATTERN matches (data '
      'checksums), decodes every image and mask, checks boxes and labels, '
      'and compares each shard with the build summary beside it (bytes, '
      'record count, SHA-256). One line per shard; exits 1 if any is bad.')
  p.add_argument('pattern', metavar='PATTERN',
                 help="shard pattern, e.g. 'data/train-*.tfrecord' (comma "
                 'separated patterns are read as the data config reads them)')
  p.add_argument('--max-image-pixels', type=int,
                 default=image_size.DEFAULT_MAX_IMAGE_PIXELS,
                 help='report images declaring more pixels instead of '
                 'decoding them; 0 for no limit (default: %(default)s)')
  p.set_defaults(func=_run_verify_tfrecord)


def _run_verify_tfrecord(args: argparse.Namespace) -> int:
  from tf_mtdet.data import verify  # pylint: disable=g-import-not-at-top

  reports = verify.verify_tfrecords(args.pattern,
                                    max_image_pixels=args.max_image_pixels)
  for report in reports:
    print(report.line(), flush=True)
  bad = [r for r in reports if not r.ok]
  records = sum(r.records for r in reports)
  if bad:
    raise verify.ShardError(
        f'{len(bad)} of {len(reports)} shard(s) bad, first {bad[0].path}; '
        f'{verify.rebuild_hint(bad[0].path, verify.summary_for(bad[0].path))}')
  print(f'{len(reports)} shard(s), {records} records: all ok')
  return 0


def _add_make_shapes(sub) -> None:
  p = sub.add_parser(
      'make-shapes',
      help='generate a small COCO-format shapes dataset (images + JSON)')
  p.add_argument('--out', required=True, help='output directory (new or empty)')
  p.add_argument('--num-images', type=int, default=200)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--image-size', type=int, nargs=2, default=(256, 320),
                 metavar=('HEIGHT', 'WIDTH'))
  p.set_defaults(func=_run_make_shapes)


def _run_make_shapes(args: argparse.Namespace) -> int:
  from tf_mtdet.data.builder import shapes  # pylint: disable=g-import-not-at-top

  summary = shapes.make_shapes(args.out, args.num_images, seed=args.seed,
                               image_size=tuple(args.image_size))
  print(f'wrote {summary["num_images"]} images and '
        f'{summary["num_annotations"]} annotations to {args.out}')
  return 0


def _add_config_args(p) -> None:
  p.add_argument('--config', help='experiment YAML path, or a shipped '
                 "config's name such as mask_rcnn/mask_rcnn_r50_fpn_1x_coco")
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='override a config value, e.g. '
                 'train_data.global_batch_size=8 (repeatable)')


def _load_config(args):
  from tf_mtdet.config import experiment  # pylint: disable=g-import-not-at-top
  return experiment.load_config(args.config, args.set)


def _add_configs(sub) -> None:
  p = sub.add_parser('configs', help='list the shipped experiment configs '
                     '(--config NAME)')
  p.add_argument('--paths', action='store_true',
                 help='print each config file path after its name')
  p.add_argument('--show', metavar='NAME', help='print this config (a name '
                 'or a path) merged, after its base: chain and --set, as '
                 'YAML')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='with --show: override a value (repeatable)')
  p.set_defaults(func=_run_configs)


def _run_configs(args: argparse.Namespace) -> int:
  from tf_mtdet.config import zoo  # pylint: disable=g-import-not-at-top
  if args.show:
    from tf_mtdet.config import experiment  # pylint: disable=g-import-not-at-top
    print(experiment.to_yaml(experiment.load_config(args.show, args.set)),
          end='')
    return 0
  if args.set:
    raise ValueError('--set needs --show NAME (the config to override)')
  for name in zoo.list_configs():
    print(f'{name}  {zoo.resolve(name)}' if args.paths else name)
  return 0


def _add_train(sub) -> None:
  p = sub.add_parser(
      'train', help='train with model.fit under a tf.distribute strategy',
      description='Trains the experiment, or resumes it from the latest '
      'checkpoint in --model-dir (step, optimizer state and learning-rate '
      'schedule continue exactly).')
  _add_config_args(p)
  p.add_argument('--model-dir', required=True,
                 help='checkpoints, TensorBoard logs and config.yaml')
  p.add_argument('--strategy', choices=('mirrored', 'multi_worker',
                                        'one_device'),
                 help='overrides runtime.strategy (multi_worker reads '
                 'TF_CONFIG)')
  p.add_argument('--mixed-precision', choices=('mixed_float16',
                                               'mixed_bfloat16'),
                 help='overrides runtime.mixed_precision')
  p.add_argument('--init-checkpoint', help='backbone checkpoint to start '
                 'from: a converted one (tf-mtdet convert-weights), an '
                 'imagenet/<name> in $TF_MTDET_WEIGHTS, or a Model Garden '
                 'ResNet checkpoint')
  p.add_argument('--verbose', type=int, choices=(0, 1, 2),
                 help='Keras verbosity: 1 progress bar, 2 one line per epoch '
                 '(default: 1 on a terminal, else 2)')
  p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
  overrides = list(args.set)
  if args.strategy:
    overrides.append(f'runtime.strategy={args.strategy}')
  if args.mixed_precision:
    overrides.append(f'runtime.mixed_precision={args.mixed_precision}')
  if args.init_checkpoint:
    overrides.append(f'runtime.init_checkpoint={args.init_checkpoint}')
  args.set = overrides
  config = _load_config(args)
  from tf_mtdet.training import callbacks  # pylint: disable=g-import-not-at-top
  from tf_mtdet.training import train  # pylint: disable=g-import-not-at-top
  try:
    verbose = (args.verbose if args.verbose is not None else
               1 if sys.stdout.isatty() else 2)
    result = train.train(config, args.model_dir, verbose=verbose)
  except callbacks.NonFiniteLossError as e:
    print(f'tf-mtdet train: error: {e}', file=sys.stderr)
    return 3
  print(f'trained to step {result["step"]}; checkpoints in '
        f'{os.path.join(args.model_dir, train.CHECKPOINT_SUBDIR)}')
  return 0


def _add_evaluate(sub) -> None:
  p = sub.add_parser(
      'evaluate', help='metrics of a checkpoint (COCO AP, proposal AR, VOC '
      'mAP, mIoU: as eval_data.metrics names), or of a COCO results file',
      description='With --checkpoint: runs the model on eval_data and '
      'prints its metrics, writing the detections as COCO results. Without '
      'it: scores the COCO results file --results-json against '
      '--annotations (e.g. `predict --json` of a served model). '
      '--per-class, --confusion-matrix and --pr-curves analyse the '
      'detections either way.')
  _add_config_args(p)
  p.add_argument('--metrics', help='comma separated, overrides '
                 'eval_data.metrics: coco, proposal_recall, voc, voc07, miou')
  p.add_argument('--checkpoint',
                 help='checkpoint prefix, or a model dir (latest checkpoint)')
  p.add_argument('--results-json', help='with --checkpoint, where to write '
                 'the COCO results (default: coco_results.json beside the '
                 'checkpoints); without, the results file to score')
  _add_evaluate_analysis_args(p)
  p.set_defaults(func=_run_evaluate)


def _add_evaluate_analysis_args(p) -> None:
  p.add_argument('--annotations', help='COCO annotation JSON to score '
                 '--results-json against (default: eval_data.annotation_file '
                 'of --config)')
  p.add_argument('--per-class', action='store_true',
                 help='print classes by metric (COCO AP/AP50/AP75, mask AP, '
                 'VOC AP, IoU) and write RESULTS_per_class.csv/.json beside '
                 'the results file')
  p.add_argument('--confusion-matrix', metavar='OUT.png',
                 help='draw the detection confusion matrix (classes + '
                 'background; counts in OUT.csv)')
  p.add_argument('--pr-curves', metavar='OUT.png',
                 help='draw precision-recall curves per class and overall')
  p.add_argument('--score-threshold', type=float, default=0.3,
                 help='confusion matrix: detections scoring at least this '
                 '(default: %(default)s)')
  p.add_argument('--iou-threshold', type=float, default=0.5,
                 help='confusion matrix: IoU of a match (default: '
                 '%(default)s)')


def _evaluate_request(args: argparse.Namespace):
  from tf_mtdet.tools.analysis import evaluate_results  # pylint: disable=g-import-not-at-top
  request = evaluate_results.Request(
      per_class=args.per_class, confusion_png=args.confusion_matrix,
      pr_curves_png=args.pr_curves, score_threshold=args.score_threshold,
      iou_threshold=args.iou_threshold)
  request.check()
  return request


_METRIC_GROUPS = (
    ('box ', '', ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')),
    ('mask', 'mask_', ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')),
    ('proposals', '', ('AR@100', 'AR@1000')),
    ('VOC07', 'voc07_', ('mAP@0.5',)), ('VOC', 'voc_', ('mAP@0.5',)),
    ('semantic', '', ('mIoU', 'pixel_accuracy')))


def _print_metrics(metrics) -> None:
  for title, prefix, keys in _METRIC_GROUPS:
    # COCOeval's -1: no ground truth of that size in the set.
    shown = [f'{k}=' + (f'{metrics[prefix + k]:.4f}'
                        if metrics[prefix + k] >= 0 else 'n/a')
             for k in keys if prefix + k in metrics]
    if shown:
      print(f'{title} ' + '  '.join(shown))


def _run_score_results(args: argparse.Namespace, request) -> int:
  """evaluate without --checkpoint: scores a COCO results file."""
  from tf_mtdet.tools.analysis import evaluate_results  # pylint: disable=g-import-not-at-top
  if not args.results_json:
    raise ValueError('give --checkpoint (evaluate a model) or --results-json '
                     'with --annotations (score a COCO results file)')
  if args.metrics:
    raise ValueError('--metrics chooses the evaluators of a --checkpoint; a '
                     'results file gets COCO (box, and mask with '
                     'segmentations) and VOC AP')
  annotations = args.annotations
  if not annotations and args.config:
    annotations = _load_config(args).eval_data.annotation_file
  if not annotations:
    raise ValueError('--results-json without --checkpoint needs '
                     '--annotations (or a --config with '
                     'eval_data.annotation_file)')
  report = evaluate_results.analyze(args.results_json, annotations, request)
  _print_metrics(report.metrics)
  for line in report.lines:
    print(line)
  return 0


def _run_evaluate(args: argparse.Namespace) -> int:
  request = _evaluate_request(args)
  if not args.checkpoint:
    return _run_score_results(args, request)
  if args.annotations:
    raise ValueError('--annotations is for scoring a results file without '
                     '--checkpoint; a checkpoint is scored against '
                     'eval_data.annotation_file')
  config = _load_config(args)
  from tf_mtdet.training import evaluate  # pylint: disable=g-import-not-at-top
  checkpoint = evaluate.resolve_checkpoint(args.checkpoint)
  results = args.results_json or os.path.join(
      os.path.dirname(checkpoint), 'coco_results.json')
  metric_names = [m.strip() for m in (args.metrics or '').split(',')
                  if m.strip()]
  if request.any:
    # The analysis reads the detections the COCO evaluator writes.
    metric_names = metric_names or list(config.eval_data.metrics or ['coco'])
    if 'coco' not in metric_names:
      metric_names.append('coco')
  metrics = evaluate.evaluate(
      config, checkpoint, results_path=results, metrics=metric_names,
      progress=sys.stderr)
  _print_metrics(metrics)
  if os.path.exists(results):
    print(f'COCO results: {results}')
  if request.any:
    from tf_mtdet.tools.analysis import evaluate_results  # pylint: disable=g-import-not-at-top
    from tf_mtdet.tools.analysis import per_class  # pylint: disable=g-import-not-at-top
    iou = per_class.from_metrics(metrics, 'IoU/')
    report = evaluate_results.analyze(
        results, config.eval_data.annotation_file, request,
        extra_columns={'IoU': iou} if iou else None)
    for line in report.lines:
      print(line)
  return 0


def _add_export(sub) -> None:
  p = sub.add_parser(
      'export', help='checkpoint -> SavedModel for TF Serving',
      description='Writes OUT/<version>/saved_model.pb with the signatures '
      'serving_default (uint8 image tensor), image_bytes (encoded images) and '
      'tf_example (serialized tf.Example); boxes come back in original-image '
      'pixels.')
  _add_config_args(p)
  p.add_argument('--checkpoint', required=True,
                 help='checkpoint prefix, or a model dir (latest checkpoint)')
  p.add_argument('--out', required=True, help="the model's base directory "
                 '(TF Serving base_path)')
  p.add_argument('--version', type=int,
                 help='version number (default: next free)')
  p.add_argument('--signatures',
                 help='comma-separated signatures to write (default all: '
                 'serving_default,image_bytes,tf_example); each traces the '
                 'whole model, so fewer export faster')
  p.add_argument('--batch-size', type=int,
                 help='static batch size of every signature (default: '
                 'dynamic); for batching servers and accelerators')
  p.add_argument('--input-size', type=int, nargs=2,
                 metavar=('HEIGHT', 'WIDTH'),
                 help='static image size of serving_default (uint8 [N, '
                 'HEIGHT, WIDTH, 3]); the eval parser resizes to it '
                 '(default: any size)')
  p.add_argument('--no-warmup', dest='warmup', action='store_false',
                 help="don't write assets.extra/tf_serving_warmup_requests")
  p.add_argument('--format', choices=('saved_model', 'tflite'),
                 default='saved_model',
                 help='tflite (single-shot families): OUT/model.tflite and '
                 'OUT/model.json, batch 1 at --input-size (default: the '
                 'eval size), NMS in the graph (default: %(default)s)')
  p.add_argument('--quantize', default='none',
                 help='(tflite) none, fp16 (float16 weights) or dynamic '
                 '(int8 weights) (default: %(default)s)')
  p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
  config = _load_config(args)
  if args.format == 'tflite':
    from tf_mtdet.serving import tflite  # pylint: disable=g-import-not-at-top
    if args.signatures is not None or args.version is not None:
      raise tflite.TFLiteError('--signatures and --version are SavedModel '
                               'flags; a TFLite export has one signature')
    path = tflite.export_tflite(config, args.checkpoint, args.out,
                                quantize=args.quantize,
                                input_size=args.input_size,
                                batch_size=args.batch_size,
                                progress=sys.stderr)
    print(f'exported {path}')
    return 0
  if args.quantize != 'none':
    raise ValueError(f'--quantize {args.quantize}: goes with --format tflite')
  from tf_mtdet.serving import exporter  # pylint: disable=g-import-not-at-top
  signatures = None
  if args.signatures is not None:
    signatures = [n.strip() for n in args.signatures.split(',') if n.strip()]
  path = exporter.export_checkpoint(config, args.checkpoint, args.out,
                                    version=args.version, progress=sys.stderr,
                                    signatures=signatures,
                                    batch_size=args.batch_size,
                                    input_size=args.input_size,
                                    warmup=args.warmup)
  print(f'exported {path}')
  return 0


def _add_predict(sub) -> None:
  p = sub.add_parser(
      'predict', help='detect on images with a SavedModel or a TFLite model '
      'and draw the results',
      description='One image: --out is its picture and --json its detections. '
      'A folder or a glob: every image goes through the model, --out is a '
      'folder of pictures (<image stem>.png) and --json one COCO results '
      'list (image_id, category_id, bbox [x, y, w, h] in original pixels, '
      'score, segmentation as RLE, file_name). A bad image stops the run '
      'naming it, leaving no picture or JSON of the run.')
  p.add_argument('--model', '--saved-model', dest='model', required=True,
                 help='SavedModel export dir (latest version) or version '
                 'dir, or a .tflite file from export --format tflite')
  p.add_argument('--image', required=True,
                 help="an image file, a folder of images, or a glob "
                 "('photos/*.jpg', quoted)")
  p.add_argument('--out', required=True, help='picture with detections '
                 '(PNG); a folder for a folder or glob of images')
  p.add_argument('--json', help='one image: its detections as JSON (masks '
                 'as COCO RLE); a folder or glob: a COCO results list')
  p.add_argument('--annotations', help='(folder or glob) COCO JSON whose '
                 'images[].file_name gives each image its image_id by '
                 'basename (default: images numbered 1..N in sorted order)')
  p.add_argument('--score-threshold', type=float, default=0.3,
                 help='detections drawn (and in a one-image JSON) score at '
                 'least this (default: %(default)s)')
  p.add_argument('--json-score-threshold', type=float, default=0.0,
                 help='(folder or glob) detections in the COCO results '
                 'score at least this (default: %(default)s, all the model '
                 'returns, as AP wants)')
  p.add_argument('--max-image-pixels', type=int,
                 default=image_size.DEFAULT_MAX_IMAGE_PIXELS,
                 help='refuse images declaring more pixels (width x height, '
                 'read from the header before decoding); 0 for no limit '
                 '(default: %(default)s)')
  p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
  from tf_mtdet.serving import predict  # pylint: disable=g-import-not-at-top
  if os.path.isdir(args.image) or glob.has_magic(args.image):
    files = predict.list_images(args.image)
    summary = predict.predict_files(
        args.model, files, args.out, args.json, annotations=args.annotations,
        score_threshold=args.score_threshold,
        json_score_threshold=args.json_score_threshold,
        max_image_pixels=args.max_image_pixels, progress=sys.stderr)
    print(f'{summary["images"]} image(s), {summary["detections"]} '
          f'detection(s) >= {args.score_threshold} drawn to {args.out}'
          + (f', {summary["results"]} COCO results in {args.json}'
             if args.json else ''))
    return 0
  if args.annotations:
    raise predict.PredictError('--annotations goes with a folder or glob '
                               'of images')
  detections = predict.predict_image(args.model, args.image,
                                     score_threshold=args.score_threshold,
                                     max_image_pixels=args.max_image_pixels)
  predict.write_prediction(args.image, detections, args.out, args.json,
                           max_image_pixels=args.max_image_pixels)
  print(f'{len(detections["scores"])} detection(s) >= {args.score_threshold} '
        f'drawn to {args.out}' + (f', JSON {args.json}' if args.json else ''))
  return 0


def _add_profile(sub) -> None:
  p = sub.add_parser(
      'profile', help='trainable parameters and inference FLOPs per part',
      description='Builds the model of a config and counts its trainable '
      'parameters and the FLOPs of one inference at --size (2 per '
      'multiply-add, as TensorFlow\'s profiler counts), in total and per '
      'top-level part (backbone, neck, heads).')
  _add_config_args(p)
  p.add_argument('--size', type=int, nargs=2, metavar=('HEIGHT', 'WIDTH'),
                 help='input size (default: the eval size, padded)')
  p.add_argument('--json', action='store_true', help='print one JSON object')
  p.set_defaults(func=_run_profile)


def _run_profile(args: argparse.Namespace) -> int:
  config = _load_config(args)
  from tf_mtdet.tools import profiling  # pylint: disable=g-import-not-at-top
  result = profiling.profile_experiment(config, args.size)
  if args.json:
    print(json.dumps(result, sort_keys=True))
  else:
    print(profiling.format_table(result))
  return 0


def _add_show_data(sub) -> None:
  p = sub.add_parser(
      'show-data', help='draw the ground truth of TFRecord shards as PNGs',
      description='Draws boxes, class names, instance masks and the semantic '
      'map (beside) of each example into OUT/<source_id>.png, to check a '
      'conversion before training on it.')
  p.add_argument('pattern', metavar='PATTERN',
                 help="shards, e.g. 'data/train-*.tfrecord' (quoted)")
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--num', type=int, default=20,
                 help='examples to draw (default 20)')
  p.add_argument('--label-map', help='class names (default: the builder\'s '
                 'PREFIX-label_map.json beside the shards)')
  p.add_argument('--after-augmentation', metavar='CONFIG', help='draw what '
                 "this experiment's training parser feeds the model instead")
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='override a value of the --after-augmentation config')
  p.set_defaults(func=_run_show_data)


def _run_show_data(args: argparse.Namespace) -> int:
  from tf_mtdet.data import show  # pylint: disable=g-import-not-at-top
  result = show.show_data(args.pattern, args.out, num=args.num,
                          label_map=args.label_map,
                          after_augmentation=args.after_augmentation,
                          overrides=args.set, log=sys.stderr)
  print(f'wrote {len(result.pictures)} picture(s) to {args.out}'
        + (f' (class names: {result.label_map})' if result.label_map else ''))
  return 0


def _add_analyze_logs(sub) -> None:
  p = sub.add_parser(
      'analyze-logs', help='training curves of runs from their TensorBoard '
      'event files',
      description='Reads the event files train writes (MODEL_DIR/logs): '
      'per-step losses as the epoch line names them (total_loss, ...) and '
      'the evaluation metrics as val_<name> (val_AP, ...), several runs '
      'overlaid.')
  p.add_argument('run_dirs', metavar='RUN_DIR', nargs='+',
                 help='model dirs (or their logs/ folders)')
  p.add_argument('--keys', help='comma separated series (default: those of '
                 'total_loss, val_AP, val_mask_AP, val_voc07_mAP@0.5, '
                 'val_mIoU logged)')
  p.add_argument('--out', metavar='OUT.png', help='draw the curves')
  p.add_argument('--json', action='store_true',
                 help='print {run: {key: [[step, value], ...]}}')
  p.set_defaults(func=_run_analyze_logs)


def _run_analyze_logs(args: argparse.Namespace) -> int:
  from tf_mtdet.tools.analysis import log_curves  # pylint: disable=g-import-not-at-top
  from tf_mtdet.tools.analysis import outputs  # pylint: disable=g-import-not-at-top
  if not args.out and not args.json:
    raise ValueError('give --out OUT.png (a picture) and/or --json')
  if args.out:
    outputs.check_png_path(args.out, '--out')
  runs = {label: log_curves.read_run(d) for label, d in
          zip(log_curves.run_labels(args.run_dirs), args.run_dirs)}
  keys = log_curves.select(
      runs, [k.strip() for k in (args.keys or '').split(',') if k.strip()])
  if args.json:
    print(log_curves.to_json(runs, keys))
  if args.out:
    log_curves.plot(args.out, runs, keys)
    print(f'{", ".join(keys)} of {len(runs)} run(s) drawn to {args.out}',
          file=sys.stderr if args.json else sys.stdout)
  return 0


def _add_data_stats(sub) -> None:
  p = sub.add_parser(
      'data-stats', help='instances per class, boxes per image, box size and '
      'aspect-ratio histograms of TFRecord shards; anchor coverage of a '
      'config',
      description='Reads the boxes of every record (no image is decoded). '
      'With --config: the share of ground-truth boxes, per size, whose best '
      "anchor (or SSD prior) reaches the matcher's positive IoU threshold "
      "at the config's training input size.")
  p.add_argument('pattern', metavar='PATTERN',
                 help="shards, e.g. 'data/train-*.tfrecord' (quoted)")
  _add_config_args(p)
  p.add_argument('--label-map', help="class names (default: the builder's "
                 'PREFIX-label_map.json beside the shards)')
  p.add_argument('--out', metavar='OUT.png', help='draw the histograms '
                 '(and the coverage per size)')
  p.add_argument('--json', action='store_true',
                 help='print the statistics as one JSON object')
  p.set_defaults(func=_run_data_stats)


def _run_data_stats(args: argparse.Namespace) -> int:
  from tf_mtdet.tools.analysis import data_stats  # pylint: disable=g-import-not-at-top
  from tf_mtdet.tools.analysis import outputs  # pylint: disable=g-import-not-at-top
  if args.out:
    outputs.check_png_path(args.out, '--out')
  if args.set and not args.config:
    raise ValueError('--set needs --config (the config to override)')
  config = _load_config(args) if args.config else None
  stats = data_stats.data_stats(args.pattern, config, args.label_map,
                               progress=sys.stderr)
  print(json.dumps(stats.as_dict()) if args.json else stats.format())
  if args.out:
    data_stats.plot(args.out, stats)
    print(f'histograms: {args.out}', file=sys.stderr if args.json
          else sys.stdout)
  return 0


def _add_quickstart(sub) -> None:
  p = sub.add_parser(
      'quickstart', help='end to end on generated data: data, TFRecords, '
      'train a tiny model on CPU, evaluate, export, predict')
  p.add_argument('--workdir', required=True)
  # quickstart.DEFAULT_CONFIG, spelled out: importing it would load
  # TensorFlow for --help.
  p.add_argument('--config', default='mask_rcnn/mask_rcnn_quickstart_shapes',
                 help="a tiny config's name or path (default: %(default)s, "
                 'the tiny Mask R-CNN with the quickstart recipe); any family')
  p.add_argument('--train-images', type=int, default=None,
                 help="generated training images (default: the config's "
                 'schedule.num_train_examples, else 300)')
  p.add_argument('--steps', type=int, default=None,
                 help="training steps of batch 4 (default: the config's "
                 'schedule.total_steps, else 600)')
  p.add_argument('--verbose', type=int, default=2, choices=(0, 1, 2))
  p.set_defaults(func=_run_quickstart)


def _run_quickstart(args: argparse.Namespace) -> int:
  from tf_mtdet import quickstart  # pylint: disable=g-import-not-at-top
  quickstart.run(args.workdir, train_images=args.train_images,
                 steps=args.steps, verbose=args.verbose, config=args.config)
  return 0


def _add_convert_weights(sub) -> None:
  p = sub.add_parser(
      'convert-weights',
      help='ImageNet ResNet/ResNeXt weights (torchvision, timm, Detectron) -> '
      'a checkpoint for --init-checkpoint',
      description='Converts a torchvision/timm state dict (.safetensors; '
      '.pth/.pt when torch is installed) or a Detectron/maskrcnn-benchmark '
      'caffe2 .pkl into a TensorFlow checkpoint OUT (OUT.index, OUT.data-*, '
      'and OUT.json: the config switches the weights need) of the resnext '
      'backbone. Every tensor must be used and every variable set; nothing '
      'is written otherwise.')
  p.add_argument('--source', required=True,
                 choices=('torchvision', 'timm', 'detectron'))
  p.add_argument('--arch', required=True,
                 choices=('resnet50', 'resnet101', 'resnext101_32x8d'))
  p.add_argument('input', metavar='IN', help='weights file')
  p.add_argument('output', metavar='OUT', help='checkpoint prefix to write, '
                 'e.g. ~/.cache/tf_mtdet/weights/imagenet/resnet50_msra')
  p.set_defaults(func=_run_convert_weights)


def _run_convert_weights(args: argparse.Namespace) -> int:
  from tf_mtdet.tools import convert_weights  # pylint: disable=g-import-not-at-top
  out = os.path.expanduser(args.output)
  report = convert_weights.convert(args.source, args.arch, args.input, out)
  print(f'{args.input}: {report.line()}; wrote {out} ({args.source} '
        f'{args.arch}; switches in {out}.json)')
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='tf-mtdet',
      description='Multi-task detection and segmentation on TF Model Garden. '
      'A failure is reported as one line "tf-mtdet COMMAND: error: ..." '
      'naming the file, record or field, with a non-zero exit status.')
  parser.add_argument('--verbose', dest='tf_logs', action='store_true',
                      help="show TensorFlow's own log lines (also "
                      'TF_MTDET_VERBOSE=1)')
  parser.add_argument('--debug', action='store_true',
                      help='also print the traceback of a failure')
  sub = parser.add_subparsers(dest='command', required=True)
  _add_build_tfrecord(sub)
  _add_verify_tfrecord(sub)
  _add_make_shapes(sub)
  _add_configs(sub)
  _add_train(sub)
  _add_evaluate(sub)
  _add_export(sub)
  _add_predict(sub)
  _add_profile(sub)
  _add_show_data(sub)
  _add_quickstart(sub)
  _add_analyze_logs(sub)
  _add_data_stats(sub)
  _add_convert_weights(sub)
  for command in sub.choices.values():
    # Also after the command; SUPPRESS keeps a --debug given before it.
    command.add_argument('--debug', action='store_true',
                         default=argparse.SUPPRESS,
                         help='also print the traceback of a failure')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  # Before TensorFlow loads; fd 2 is filtered only when run as the program.
  quiet.setup(verbose=args.tf_logs, filter_stderr=argv is None)
  try:
    return args.func(args)
  except KeyboardInterrupt:
    print(f'tf-mtdet {args.command}: interrupted', file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if args.debug:
      traceback.print_exc()
    print(f'tf-mtdet {args.command}: error: {errors.one_line(e)}',
          file=sys.stderr)
    return 1 if errors.is_expected(e) else 2


if __name__ == '__main__':
  sys.exit(main())
