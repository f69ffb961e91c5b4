"""Chapter 4: implementing a GPT model from scratch (not written yet)."""
