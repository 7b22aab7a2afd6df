"""vlserve: a self-hostable serving stack for Qwen-VL vision-language models."""

__version__ = "0.1.0"
