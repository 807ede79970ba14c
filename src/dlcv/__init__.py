"""dlcv: the computer-vision work of NTU DLCV HW1, end to end.

Layout: ``data`` (formats, caches, batched augmentation, synthetic data), ``models`` (``nn.Module`` builders by name),
``tasks`` (Lightning modules: what is optimised and measured), ``metrics``, ``viz`` (figures), ``cli`` (parses only).
"""

__version__ = "0.1.0"
