"""Training GPT-2 in NumPy: gradients (grad.py), the optimizer, the data and the loop."""
