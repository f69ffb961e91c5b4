"""Chapter 2: working with text data (tokenization, BPE, data loaders, embeddings)."""
