# Generated from ch06_classification/beyond_2_mistakes.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export mistakes`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_2_mistakes.ipynb cell 2, Chapter 6, beyond the book: how good is the spam classifier?

"""Chapter 6, beyond the book: the prompted model's yes/no answer and the finetuned
classifier's predictions, to compare and to count mistakes."""

import torch

from ch05_pretraining.pretraining import context_length_of, text_to_token_ids


def prompted_answer(model, text, tokenizer, device) -> int:
    """1 ("yes, spam") if the language model's next token after the question is more likely
    " yes" than " no", else 0."""
    yes, no = tokenizer.encode(" yes")[0], tokenizer.encode(" no")[0]
    # The question comes after the message, so a crop to the context keeps the question.
    prompt = f"Message: {text}\nIs this message spam? Answer yes or no:"
    ids = text_to_token_ids(prompt, tokenizer)[:, -context_length_of(model):].to(device)
    with torch.no_grad():
        logits = model(ids)[0, -1]
    return int(logits[yes] > logits[no])


def predictions(model, loader, device) -> torch.Tensor:
    """The predicted class of every example of `loader`, in order, on the CPU."""
    model.eval()  # below: cut to the model's context, as classify_review does
    with torch.no_grad():
        return torch.cat([model(x.to(device)[:, :context_length_of(model)])[:, -1].argmax(-1).cpu()
                          for x, _ in loader])


__all__ = [
    'prompted_answer',
    'predictions',
]
