"""The per-pixel semantic class map as a target (and for mIoU evaluation)."""

from tf_mtdet.data import augment
from tf_mtdet.data.targets import base


class SemanticTargets(base.TargetGenerator):
  """`gt_semantic` [padded_h, padded_w] int32 at the output size (padding and
  unlabelled pixels = the ignore label), in training and evaluation. A head
  predicting at stride s upsamples its logits by exactly s in its loss
  (a target at any other size is an error). Evaluation adds
  `gt_semantic_original` [*semantic_eval_max_size]: the map at the original
  resolution (top-left, ignore around it), where mIoU is scored."""

  needs = frozenset({augment.SEMANTIC})

  def train(self, example):
    return {'gt_semantic': example['semantic']}

  def eval(self, example):
    return {'gt_semantic': example['semantic'],
            'gt_semantic_original': example['semantic_original']}
