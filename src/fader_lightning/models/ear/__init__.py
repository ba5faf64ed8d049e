"""Stage 1: the EAR masked-inpainting model and its Lightning module."""
