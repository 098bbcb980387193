"""Networks (diffusers ``ModelMixin`` + ``ConfigMixin``)."""

from .adm_classifier import ADMClassifierModel
from .adm_unet import ADMUNet2DModel, ADMUNet2DOutput
from .sr_unet import SuperResolutionUNet2DModel
from .unclip_decoder import UnCLIPDecoderUNet2DModel
from .unclip_prior import UnCLIPPriorOutput, UnCLIPPriorTransformer

__all__ = [
    "ADMClassifierModel",
    "ADMUNet2DModel",
    "ADMUNet2DOutput",
    "SuperResolutionUNet2DModel",
    "UnCLIPDecoderUNet2DModel",
    "UnCLIPPriorOutput",
    "UnCLIPPriorTransformer",
]
