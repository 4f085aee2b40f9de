"""Definitions shared by every stage: flavours, units, errors, atomic outputs, splits."""
