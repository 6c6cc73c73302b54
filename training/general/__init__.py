"""The general encoder: one embedding for any anime character, trained on faces/ + characters/ (issue 28)."""
