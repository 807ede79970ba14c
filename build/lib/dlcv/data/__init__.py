"""Data formats of the course, the decoded-image cache, batched augmentation and synthetic data."""
