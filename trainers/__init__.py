"""Fine-tuning beside evaluation: arguments, methods and DeepSpeed configs as data, TRL's SFT trainer, the launch
on 1 to N GPUs and machines, and the training record. Imports data, prompts, models and records; never `eval`,
and nothing on the evaluation side imports it (they meet in checkpoints and records on disk)."""
