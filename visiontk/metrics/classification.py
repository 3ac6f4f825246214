"""Top-k accuracy and a confusion matrix accumulated over a whole split."""
from __future__ import annotations

import torch


class ClassificationMetrics:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # [true, pred]
        self.top5_hits = 0
        self.count = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        pred = logits.argmax(1)
        idx = labels * self.num_classes + pred
        self.confusion += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        k = min(5, self.num_classes)
        self.top5_hits += (logits.topk(k, 1).indices == labels[:, None]).any(1).sum().item()
        self.count += labels.numel()

    def compute(self) -> dict:
        cm = self.confusion.double()
        tp = cm.diag()
        support = cm.sum(1)
        predicted = cm.sum(0)
        precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
        recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
        n = max(self.count, 1)
        top1 = tp.sum().item() / n
        return {
            "top1": top1,
            "top5": self.top5_hits / n,
            "fitness": top1,
            "count": self.count,
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "support": support.long().tolist(),
            "confusion_matrix": self.confusion.tolist(),
        }

    def all_reduce(self) -> None:
        """Sum the counts over DDP processes."""
        import torch.distributed as dist

        t = torch.cat([self.confusion.flatten(), torch.tensor([self.top5_hits, self.count])])
        dist.all_reduce(t)
        k = self.num_classes**2
        self.confusion = t[:k].view(self.num_classes, self.num_classes)
        self.top5_hits, self.count = int(t[k]), int(t[k + 1])
