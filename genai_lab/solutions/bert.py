"""Reference solutions of `labs/04_bert_lab.ipynb`: Lab 4. BERT's pretraining tasks.

Each function or class here is the answer to one exercise of the lab, with the same signature and
docstring as the stub in the notebook.  ``genai_lab.checks.bert`` shows them on demand
(``<exercise>.solution()``) and ``python -m genai_lab labs solved OUT`` writes them into the lab.
"""

import torch
import torch.nn.functional as F


def mask_tokens(input_ids, *, mask_token_id, vocab_size, special_token_ids, mlm_probability=0.15,
                generator=None):
    """Corrupt int64 ``input_ids`` (B, T) for MLM; return ``(masked_ids, labels)``, both (B, T)."""
    special = torch.tensor(sorted(set(special_token_ids) | {mask_token_id}))
    is_special = torch.isin(input_ids, special)
    selected = (torch.rand(input_ids.shape, generator=generator) < mlm_probability) & ~is_special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    choice = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special.tolist())])
    random_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    masked = torch.where(selected & (choice < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(selected & (choice >= 0.8) & (choice < 0.9), random_ids, masked)
    return masked, labels


def nsp_pairs(documents, n_pairs, generator=None):
    """``n_pairs`` tuples ``(a, b, label)``: label 0 when b follows a, 1 when b is random."""
    starts = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]
    pairs = []
    for _ in range(n_pairs):
        d, i = starts[int(torch.randint(len(starts), (1,), generator=generator))]
        if float(torch.rand(1, generator=generator)) < 0.5:
            pairs.append((documents[d][i], documents[d][i + 1], 0))
        else:
            other = int(torch.randint(len(documents) - 1, (1,), generator=generator))
            other += other >= d
            j = int(torch.randint(len(documents[other]), (1,), generator=generator))
            pairs.append((documents[d][i], documents[other][j], 1))
    return pairs


def masked_lm_loss(logits, labels):
    """Mean cross-entropy of ``logits`` (B, T, V) at positions where ``labels`` (B, T) != -100."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def top_k_tokens(logits, k):
    """Softmax probabilities and ids of the ``k`` best entries of ``logits`` (V,), best first."""
    top = logits.softmax(-1).topk(k)
    return top.values, top.indices
