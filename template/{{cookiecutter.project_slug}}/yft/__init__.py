"""This project's YOLOX finetuning package: data, train, evaluate and deploy stages.

Every stage reads its settings from the project's Exp file (see `yft.project.load_exp`).
"""

__version__ = "0.1.0"
