"""The models: MiniLM encoders (torch and ONNX), their export, embedders, the LLM backends and local GGUF models."""
