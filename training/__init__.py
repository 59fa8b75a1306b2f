"""What the phase scripts share: data loading and run splits, optimizer and train-step makers,
checkpoint names and lookups, metrics logging, atomic writes, and the PPO pieces (GAE, return
filter, update, rollout runner, progress reward, entropy watch). Scripts import from here,
never from each other."""
