"""Insight (洞察): lifecycle stages, value scores and the tag system."""
