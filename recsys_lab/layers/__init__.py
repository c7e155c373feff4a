"""Shared neural building blocks. Pure PyTorch; never imports Lightning."""
