"""Checkpoint -> TF Serving SavedModel, from an experiment config."""

from typing import Optional, Sequence, TextIO

from tf_mtdet import families
from tf_mtdet.config import experiment as experiment_config
from tf_mtdet.serving import export as export_lib
from tf_mtdet.training import evaluate


def export_checkpoint(config: experiment_config.ExperimentConfig,
                      checkpoint: str, export_dir: str,
                      version: Optional[int] = None,
                      progress: Optional[TextIO] = None,
                      signatures: Optional[Sequence[str]] = None,
                      batch_size: Optional[int] = None,
                      input_size: Optional[Sequence[int]] = None,
                      warmup: bool = True) -> str:
  """Exports `checkpoint` of the experiment; returns the version directory.

  Preprocessing in the graph is the eval parser's (`config.eval_data.parser`),
  class names come from `config.train_data.label_map`, the image size limit
  from `config.export.max_image_pixels`. `progress` (a stream, e.g.
  `sys.stderr`) gets one line per stage. `signatures` names the signatures
  to write (default all three). `batch_size` and `input_size` (height,
  width) give the signatures static shapes (`ServingModule`); with
  `input_size` the eval parser resizes to it (`resize_mode` fixed,
  `output_size` [height, width]).
  """
  # A bad checkpoint path or label map fails before the model is built.
  export_lib.signature_keys(signatures)  # a bad name fails first
  export_lib.check_static_shape(batch_size, input_size)
  if input_size is not None:
    config = fixed_input_config(config, input_size)
  checkpoint = evaluate.resolve_checkpoint(checkpoint)
  label_map = export_lib.read_label_map(config.train_data.label_map)
  if progress is not None:
    print(f'export: building the model and restoring {checkpoint}',
          file=progress, flush=True)
  family = families.get(config)
  model, _ = evaluate.load_model(config, checkpoint, family)
  module = export_lib.ServingModule(
      model, family, family.build_parser(config.eval_data), label_map,
      full_image_masks=config.export.full_image_masks,
      score_threshold=config.export.score_threshold,
      max_image_pixels=config.export.max_image_pixels,
      batch_size=batch_size, input_size=input_size, params=config)
  return export_lib.export_saved_model(module, export_dir, version=version,
                                       progress=progress,
                                       signatures=signatures, warmup=warmup)


def fixed_input_config(config: experiment_config.ExperimentConfig,
                       input_size: Sequence[int]
                       ) -> experiment_config.ExperimentConfig:
  """A copy of `config` whose eval parser resizes to `input_size`."""
  fixed = experiment_config.ExperimentConfig(config.as_dict())
  fixed.eval_data.parser.override(
      {'resize_mode': 'fixed', 'output_size': [int(v) for v in input_size]},
      is_strict=True)
  return fixed
