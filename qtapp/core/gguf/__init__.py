"""Reading a GGUF without loading it: the header reader, the model card, tensor names, split sets
and THE fingerprint (one scheme for the whole app)."""
