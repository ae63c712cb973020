"""BC-CNN, SB3-protocol policy adapters, scripted demonstrators and dyna-style RL."""
