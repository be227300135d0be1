"""Writers of small real GGUF files (tiny models with weights, header-only sparse models of many
architectures), shared by the tests, the benches and the screenshots. Not used by the app."""
