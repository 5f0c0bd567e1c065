"""`python -m qa.models.llama_server ARGS`: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server`, same arguments) with llama.cpp's CPU code loaded first. The build
`make` installs keeps that code as run-time variants (qa/models/llms.py: load_cpu_backend), which
llama-cpp-python's own server does not load ("no backends are loaded")."""

import runpy

from qa.models.llms import load_cpu_backend

if __name__ == "__main__":
    load_cpu_backend()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
