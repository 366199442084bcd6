"""Losses: read the model's raw output dict and the parser's labels."""
