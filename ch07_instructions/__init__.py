"""Chapter 7: finetuning to follow instructions."""
