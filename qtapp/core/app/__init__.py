"""The application's frame: paths, settings, logging, model discovery, glossary, versions and
the demo's steps."""
