"""Figures. Matplotlib is imported inside the functions, with the non-interactive Agg backend."""
