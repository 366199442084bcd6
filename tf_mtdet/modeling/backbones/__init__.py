"""Backbones Model Garden lacks, registered in its backbone registry."""
