"""The bottom of the house: shared types and helpers every other package may import."""
