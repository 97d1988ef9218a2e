"""Caption text processing: K-Precision normalisation, offline POS tagging, object mentions for CHAIR."""
