"""The pipeline core: step bases, params, registry, cache, checkpoints, executors, runner."""
