"""inferline quantize: compressed-tensors checkpoints for vLLM (llm-compressor) and GGUF files for llama.cpp."""
