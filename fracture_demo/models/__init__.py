"""Architectures that timm does not ship in the shape this project needs."""
from .custom_cnn import CustomCNN
from .fusion import Fusion
from .vgg import VggGap, deepen_vgg16, vgg19_bn_gap

__all__ = ["CustomCNN", "Fusion", "VggGap", "deepen_vgg16", "vgg19_bn_gap"]
