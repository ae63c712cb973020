"""BC-CNN, policy adapters with the stable-baselines3 predict protocol, demonstrators, dyna-style RL."""
