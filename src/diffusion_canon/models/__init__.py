"""Networks (diffusers ``ModelMixin`` + ``ConfigMixin``)."""

from .adm_classifier import ADMClassifierModel
from .adm_unet import ADMUNet2DModel, ADMUNet2DOutput

__all__ = ["ADMClassifierModel", "ADMUNet2DModel", "ADMUNet2DOutput"]
