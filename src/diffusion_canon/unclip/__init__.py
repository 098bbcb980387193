"""unCLIP helpers (Ramesh et al. 2022): the tiny glyph CLIP's training and evaluation."""
