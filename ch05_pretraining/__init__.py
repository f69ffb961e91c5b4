"""Chapter 5: pretraining on unlabelled data."""
