"""A toy Video-LLM for measuring accuracy offline: synthetic shape-and-colour video QA
(`stc.toy.data`: 16-frame clips, five question types) and a small LLaVA-OneVision of the real
token geometry trained on it from a seed (`stc.toy.train`: the recipe, the run, the checkpoint's
records; `stc.toy.stages`: stage A, the vision tower, and stage B, the Video-LLM on its frozen
features; `stc.toy.model`: the model and its inputs). The committed checkpoint is
toy/llava-onevision (its README says what it learnt).
"""
