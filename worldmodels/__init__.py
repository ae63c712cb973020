"""Image tokenizer, GPT core, token sequence models, the shared pre-training loop, simulators."""
