"""Analysis tools of `tf-mtdet`: per-class results, the detection confusion
matrix, precision-recall and training curves, data and anchor statistics."""
