"""Architectures that timm does not ship in the shape this project needs."""
from .custom_cnn import CustomCNN
from .fusion import Fusion
from .vgg import vgg19_bn_gap

__all__ = ["CustomCNN", "Fusion", "vgg19_bn_gap"]
