"""Serving people and programs: the REST API, the Gradio chat page, tokens and roles."""
