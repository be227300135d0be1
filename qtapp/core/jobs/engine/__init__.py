"""The only code that talks to llama.cpp.

It runs inside the worker child process, never in the window.
"""
