"""Architectures that timm does not ship in the shape this project needs."""
from .custom_cnn import CustomCNN
from .vgg import vgg19_bn_gap

__all__ = ["CustomCNN", "vgg19_bn_gap"]
