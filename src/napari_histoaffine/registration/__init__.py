"""The registration engine: preprocess, pose search, network, refinement, verdict."""
