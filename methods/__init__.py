"""Built-in methods; each module registers itself with `wsolbench.registry.register_method`."""
