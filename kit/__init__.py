"""qkit: reproduce published vision-model quantization results with real measurements."""

__version__ = "0.1.0"
