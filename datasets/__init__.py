"""Built-in dataset adapters; each module registers itself with `wsolbench.registry.register_dataset`."""
