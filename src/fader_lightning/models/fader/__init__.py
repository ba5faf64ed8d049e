"""Stage 2: the FADeR skip attenuation, its ranking targets and its Lightning module."""
