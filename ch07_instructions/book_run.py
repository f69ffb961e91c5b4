"""What the book's own run of chapter 7 reports: numbers copied from its repository, not computed.

The book finetunes OpenAI's GPT-2 medium (355M), which this course's machines cannot download;
the notebook plots these numbers beside its own run so that the difference pretraining makes
is visible. One table, used by every cell and figure that shows them.

Source: rasbt/LLMs-from-scratch, ch07/01_main-chapter-code/ch07.ipynb at commit
ce80a192cd4c0e54abc7dfeaf906efc81111b6b4, read on 2026-11-23 (section 7.6's training log:
AdamW, lr 5e-5, weight decay 0.1, batches of 8, 2 epochs of 116 steps, losses on 5 batches).
"""

SOURCE = ("the book's repository (rasbt/LLMs-from-scratch, ch07/01_main-chapter-code/"
          "ch07.ipynb, commit ce80a19, read on 2026-11-23)")

STEPS_PER_EPOCH = 116  # 935 training entries, batches of 8, the last incomplete one dropped

# Before the first update (5 batches each).
INITIAL = {"train": 3.826, "val": 3.762}

# The log's "Ep k (Step s)" lines: evaluated after s + 1 updates (the log counts steps from 0).
LOGGED_STEPS = list(range(0, 231, 5))
TRAIN_LOSS = [
    2.637, 1.174, 0.872, 0.857, 0.776, 0.754, 0.799, 0.714, 0.672, 0.633, 0.663, 0.760,
    0.719, 0.653, 0.532, 0.569, 0.605, 0.509, 0.562, 0.500, 0.503, 0.564, 0.555, 0.508,
    0.435, 0.451, 0.447, 0.405, 0.409, 0.369, 0.382, 0.413, 0.415, 0.379, 0.323, 0.337,
    0.392, 0.415, 0.340, 0.330, 0.310, 0.352, 0.367, 0.394, 0.299, 0.346, 0.292,
]
VAL_LOSS = [
    2.626, 1.102, 0.944, 0.906, 0.881, 0.859, 0.836, 0.808, 0.806, 0.789, 0.783, 0.763,
    0.743, 0.735, 0.729, 0.728, 0.725, 0.709, 0.691, 0.681, 0.677, 0.670, 0.666, 0.664,
    0.672, 0.687, 0.683, 0.682, 0.681, 0.680, 0.675, 0.675, 0.683, 0.686, 0.681, 0.669,
    0.656, 0.657, 0.648, 0.634, 0.634, 0.630, 0.630, 0.635, 0.648, 0.661, 0.659,
]
assert len(LOGGED_STEPS) == len(TRAIN_LOSS) == len(VAL_LOSS) == 47
