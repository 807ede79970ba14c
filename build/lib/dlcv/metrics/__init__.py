"""Metrics computed from predictions with NumPy alone (fast to import, exact to define)."""
