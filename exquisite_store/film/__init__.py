"""A film of a branch's growth: plan the frames (pure), render them from tiles, encode."""
