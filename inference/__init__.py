"""Docstring -> Python code generation with trained checkpoints (see inference/README.md)."""
from inference.inference import (
                                 AttentionResult,
                                 CheckpointError,
                                 batch_generate,
                                 clear_cache,
                                 generate_code,
                                 generate_with_attention,
                                 load_generator,
                                 plot_attention,
)

__all__ = ["AttentionResult", "CheckpointError", "batch_generate", "clear_cache", "generate_code",
           "generate_with_attention", "load_generator", "plot_attention"]
