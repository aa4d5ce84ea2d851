"""Data stage: COCO files, the sample dataset and the loaders that feed training and evaluation."""
