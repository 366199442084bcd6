"""Parsers: decoded examples -> (images, labels) for each model family."""
