"""Chapter 2: working with text data (tokenisation, BPE, data loaders, embeddings)."""
