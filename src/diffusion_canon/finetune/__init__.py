"""Fine-tuning Stable-Diffusion-format models: DreamBooth, LoRA, textual inversion (shared pieces)."""
