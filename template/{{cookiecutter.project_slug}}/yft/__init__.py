"""This project's YOLOX finetuning package: data, train, evaluate and deploy stages.

Every stage reads its settings from the project's Exp file (see `yft.project.load_exp`).
"""

__version__ = "0.1.0"

import warnings

# yolox 0.3.0 calls APIs that current torch deprecates; the warnings say nothing the user can
# act on, so they are silenced here, for yolox's modules only.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"yolox\.")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"yolox\.")
