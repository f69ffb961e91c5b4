# Generated from ch06_classification/classification.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% classification.ipynb cell 3, Chapter 6 — Finetuning for classification: a spam filter

"""Chapter 6: finetuning a GPT for text classification (spam detection)."""

import pandas as pd

from shared.data import fetch


# %% classification.ipynb cell 6, 6.2 Preparing the dataset

def load_sms_spam() -> pd.DataFrame:
    """The SMS Spam Collection as a DataFrame with columns Label ('ham'/'spam') and Text."""
    return pd.read_csv(fetch("sms-spam-collection"), sep="\t", header=None,
                       names=["Label", "Text"])


# %% classification.ipynb cell 10, Balancing the classes

def create_balanced_dataset(df: pd.DataFrame, *, seed: int = 123) -> pd.DataFrame:
    """Undersample every label to the size of the rarest one (a seeded random choice)."""
    smallest = df["Label"].value_counts().min()
    parts = [group.sample(smallest, random_state=seed) if len(group) > smallest else group
             for _, group in df.groupby("Label", sort=False)]
    return pd.concat(parts)


__all__ = [
    'load_sms_spam',
    'create_balanced_dataset',
]
