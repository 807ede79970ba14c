"""dlcv: the computer-vision work of NTU DLCV HW1, end to end.

Layout: ``data`` (formats, caches, batched augmentation, synthetic data), ``models`` (plain
``nn.Module`` builders by name), ``tasks`` (Lightning modules: what is optimised and measured),
``metrics``, ``viz`` (figures), ``cli`` (parses and calls; nothing else).
"""

__version__ = "0.1.0"
