"""CLIP for unCLIP: the tiny glyph CLIP (its config, training and retrieval accuracy) and the encodings unCLIP reads
from any CLIP."""
