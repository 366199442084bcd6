"""Experiment configuration dataclasses (Model Garden `hyperparams.Config`)."""
