"""`tf-mtdet` command line: parses flags and calls the library.

Heavy imports (TensorFlow) happen inside the subcommands so `--help` is instant.
"""

import argparse
import json
import os
import sys
from typing import Optional, Sequence


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
  p.add_argument('--box-masks', action='store_true',
                 help='instances without a segmentation (all of them for VOC) '
                 'get their box filled as a coarse mask')
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
  options = builder.EncodeOptions(
      include_masks=args.include_masks, semantic=args.semantic,
      box_masks=args.box_masks,
      category_names={c.id: c.name for c in source.categories})
  result = builder.build_tfrecords(
      source, args.output, args.num_shards, options, log,
      num_workers=args.num_workers,
      progress_stream=None if args.quiet else sys.stderr)
  s = result.summary
  print(f'wrote {s["images"]} images, {s["instances"]} instances '
        f'({s["crowd"]} crowd) to {len(result.shards)} shard(s) '
        f'{args.output}-*.tfrecord; skipped {s["skipped_total"]} item(s)'
        + (f' {json.dumps(s["skipped"])}' if s['skipped_total'] else '')
        + f'; summary: {result.summary_path}')
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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='tf-mtdet',
      description='Multi-task detection and segmentation on TF Model Garden.')
  sub = parser.add_subparsers(dest='command', required=True)
  _add_build_tfrecord(sub)
  _add_make_shapes(sub)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  # TensorFlow's C++ start-up chatter (no CUDA on this host, ...) hides our own
  # messages; a user who wants it sets the variable.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  args = build_parser().parse_args(argv)
  from tf_mtdet.data.builder import records  # pylint: disable=g-import-not-at-top
  try:
    return args.func(args)
  except (records.BuildError, FileExistsError, ValueError) as e:
    print(f'tf-mtdet {args.command}: error: {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main())
