"""The evaluators an experiment names, run as one.

`eval_data.metrics` lists them (empty: the family's default, COCO AP):
  * 'coco': COCO box AP, and mask AP for models with masks;
  * 'proposal_recall': RPN proposal AR@100 and AR@1000 (two-stage models);
  * 'voc': Pascal VOC mAP@0.5, all-point (VOC2010+), keys `voc_*`;
  * 'voc07': the same with VOC2007's 11-point AP, keys `voc07_*`;
  * 'miou': semantic segmentation mIoU (models with a semantic output), at
    the original image resolution: the predicted class map with the
    padding removed and scaled back as serving's `semantic_map` is, against
    the unresized ground truth.
"""

from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from tf_mtdet.config import experiment as experiment_config
from tf_mtdet.evaluation import coco
from tf_mtdet.evaluation import recall
from tf_mtdet.evaluation import segmentation
from tf_mtdet.evaluation import voc
from tf_mtdet.serving import export as export_lib

METRICS = ('coco', 'proposal_recall', 'voc', 'voc07', 'miou')


class MultiEvaluator:
  """Several evaluators behind the one evaluator interface; result keys are
  the evaluators' own, with a prefix each where two could collide."""

  def __init__(self, evaluators: Mapping[str, Any],
               prefixes: Optional[Mapping[str, str]] = None):
    self.evaluators = dict(evaluators)
    self._prefixes = dict(prefixes or {})

  @property
  def name(self) -> str:
    return '+'.join(self.evaluators)

  def reset_states(self) -> None:
    for evaluator in self.evaluators.values():
      evaluator.reset_states()

  def update_state(self, groundtruths: Optional[Mapping[str, Any]],
                   predictions: Mapping[str, Any]) -> None:
    for name, evaluator in self.evaluators.items():
      if name == 'miou':
        for truth, predicted in semantic_at_original_resolution(
            groundtruths, predictions):
          evaluator.update_state({'semantic': truth[np.newaxis]},
                                 {'semantic': predicted[np.newaxis]})
      else:
        evaluator.update_state(groundtruths, predictions)

  def result(self) -> dict[str, float]:
    results = {}
    for name, evaluator in self.evaluators.items():
      prefix = self._prefixes.get(name, '')
      results.update({prefix + k: v for k, v in evaluator.result().items()})
    return results

  def write_results_json(self, path: str) -> None:
    """The COCO detections JSON, when COCO AP is among the metrics."""
    if 'coco' in self.evaluators:
      self.evaluators['coco'].write_results_json(path)


def semantic_at_original_resolution(
    groundtruths: Mapping[str, Any], predictions: Mapping[str, Any]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Per image (ground truth, prediction) [h, w] at its original size.

  Args:
    groundtruths: {'gt_semantic_original': [B, max_h, max_w] labels in the
      top-left corner}.
    predictions: {'semantic': [B, padded_h, padded_w] class ids at the model
      input, 'image_info': [B, 4, 2]}.

  Yields:
    The image's ground truth and its prediction with the input padding
    removed and scaled back nearest-neighbour (serving's `semantic_map`).
  """
  info = np.asarray(predictions['image_info'])
  original = export_lib.semantic_at_original_size(
      np.asarray(predictions['semantic'], np.int32), info).numpy()
  truths = np.asarray(groundtruths['gt_semantic_original'])
  for b, (height, width) in enumerate(np.round(info[:, 0, :]).astype(int)):
    yield truths[b, :height, :width], original[b, :height, :width]


# Shown in the epoch line when present (TensorBoard gets every metric).
HEADLINE_METRICS = ('AP', 'AP50', 'mask_AP', 'AR@100', 'AR@1000',
                    'voc07_mAP@0.5', 'voc_mAP@0.5', 'mIoU')


def headline(metrics: Mapping[str, float]) -> dict[str, float]:
  """The headline entries of `metrics`, in `HEADLINE_METRICS` order."""
  return {k: metrics[k] for k in HEADLINE_METRICS if k in metrics}


def build_evaluator(config: experiment_config.ExperimentConfig, family,
                    metrics: Sequence[str] = (),
                    results_path: Optional[str] = None,
                    class_names: Optional[Sequence[str]] = None
                    ) -> MultiEvaluator:
  """The evaluators `metrics` (default: `eval_data.metrics`, else COCO) name.

  Raises:
    ValueError: an unknown metric, a metric the model cannot give, or no
      annotation file.
  """
  metrics = list(metrics or config.eval_data.metrics or ['coco'])
  unknown = sorted(set(metrics) - set(METRICS))
  if unknown:
    raise ValueError(f'eval_data.metrics: unknown {unknown}; known: '
                     f'{list(METRICS)}')
  annotations = config.eval_data.annotation_file
  if not annotations and set(metrics) - {'miou'}:
    raise ValueError('eval_data.annotation_file must be set (the builder '
                     'writes PREFIX-annotations.json)')
  evaluators, prefixes = {}, {}
  for metric in metrics:
    if metric == 'coco':
      evaluators[metric] = coco.COCOEvaluator(
          annotations, include_mask=family.include_mask,
          results_path=results_path)
    elif metric == 'proposal_recall':
      if not family.has_proposals:
        raise ValueError('eval_data.metrics: proposal_recall needs a model '
                         'with region proposals (model.type two_stage)')
      evaluators[metric] = recall.ProposalRecallEvaluator(annotations)
    elif metric in ('voc', 'voc07'):
      evaluators[metric] = voc.VOCMeanAPEvaluator(
          annotations, use_07_metric=metric == 'voc07')
      prefixes[metric] = metric + '_'
    else:
      num_classes = family.semantic_classes
      if not num_classes:
        raise ValueError('eval_data.metrics: miou needs a model with a '
                         'semantic output')
      evaluators[metric] = segmentation.SemanticIoUEvaluator(
          num_classes, ignore_label=config.eval_data.parser.semantic_ignore_label,
          class_names=class_names)
  return MultiEvaluator(evaluators, prefixes)
