"""Whole-recording inference: segment every frame, find ED/ES per beat, estimate EF (`gdkvm predict`)."""
