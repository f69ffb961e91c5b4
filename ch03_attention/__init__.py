"""Chapter 3: attention mechanisms, from plain dot products to multi-head causal attention."""
