"""Small helpers every stage shares (ports, timestamps): stage-free, imported from anywhere above."""
