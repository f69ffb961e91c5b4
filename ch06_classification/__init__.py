"""Chapter 6: finetuning for spam classification."""
