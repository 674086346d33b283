"""Scores used by steps and reports: MT quality, projection, language similarity."""
