"""The Game Boy action set and the timing of one env step, without importing PyBoy.

An action is an index into ACTION_NAMES: "noop" presses nothing, the rest are PyBoy's
button names. VecGameBoy drops the last one ("select") unless asked for it.

One env step runs FRAME_SKIP emulator frames (30 = 0.5 s at 60 fps): the chosen button is
held for the first PRESS_FRAMES of them, then released. These are VecGameBoy's defaults;
data that imitates env steps (the speedrun bot's random branches) uses the same numbers.
"""

ACTION_NAMES = ("noop", "up", "down", "left", "right", "a", "b", "start", "select")
ENV_ACTIONS = ACTION_NAMES[:-1]  # VecGameBoy's action set unless it is asked for SELECT
FRAME_SKIP, PRESS_FRAMES = 30, 8
